"""Durations in seconds, with the ranges every timeout, interval and backoff obeys.

One rule for task-graph files, plans built by workflows and settings: a duration is
a finite number of seconds (NaN and infinity are refused, so no ``OverflowError``
or endless wait appears later), and a timeout above :data:`MAX_TIMEOUT` (7 days)
means 7 days, which in practice is no timeout. Larger numbers than a thread wait
or ``time.sleep`` accepts (``1e10``) therefore never reach them.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge, Gt
from pydantic import AfterValidator, AllowInfNan, BeforeValidator

MAX_TIMEOUT = 604_800.0
"""Seconds (7 days): a longer timeout is treated as this one."""


def cap_timeout(seconds: float) -> float:
    """``seconds``, or :data:`MAX_TIMEOUT` if it is larger (a huge timeout means none)."""
    return min(seconds, MAX_TIMEOUT)


def not_bool(value: Any) -> Any:
    """``value`` unchanged; ``true``/``false`` are refused where a number is expected.

    Pydantic's lax mode would read ``timeout: true`` as 1 second.
    """
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


NotBool = BeforeValidator(not_bool)
"""Add to an ``int``/``float`` annotation to refuse booleans."""

Seconds = Annotated[float, Ge(0), AllowInfNan(False), NotBool]
"""A finite number of seconds, 0 or more."""

PositiveSeconds = Annotated[float, Gt(0), AllowInfNan(False), NotBool]
"""A finite number of seconds, more than 0."""

Timeout = Annotated[float, Gt(0), AllowInfNan(False), NotBool, AfterValidator(cap_timeout)]
"""A finite timeout in seconds, more than 0; above 7 days it is 7 days."""

TimeoutOrZero = Annotated[float, Ge(0), AllowInfNan(False), NotBool, AfterValidator(cap_timeout)]
"""Like :data:`Timeout`, but 0 is allowed (meaning "none" where documented)."""
