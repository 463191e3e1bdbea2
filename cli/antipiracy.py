"""``connectsw antipiracy scan``: run the anti-piracy detectors over the usage events."""

from __future__ import annotations

from pathlib import Path

import click

from connectsw.cli.context import State, console, json_option, pass_state, print_json
from connectsw.cli.render import id_table, line


@click.group("antipiracy")
def antipiracy() -> None:
    """Anti-piracy: run the detectors of reference §3.2 over the usage events."""


@antipiracy.command("scan")
@click.option(
    "--since", default="7d", show_default=True, help="Window: 7d, 12h, 2w, or an ISO date."
)
@click.option("--license", "license_id", help="Only this license.")
@click.option(
    "--data",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A `simulate traffic` output directory instead of the data dir and the store.",
)
@click.option(
    "--apply",
    "apply_tiers",
    is_flag=True,
    help="Take the recommended response tier for each license (reference §3.3): e-mails"
    " to the outbox, throttle, suspension; a finding is acted on once.",
)
@json_option
@pass_state
def scan(
    state: State,
    since: str,
    license_id: str | None,
    data: Path | None,
    apply_tiers: bool,
    as_json: bool,
) -> None:
    """Score every license with findings: flags, evidence, recommendation; with --apply,
    take the recommended response tier."""
    # ``analytics report`` invokes this command too, never with --apply.
    from connectsw.licensing.analytics.report import summary
    from connectsw.licensing.analytics.service import scan as run

    if apply_tiers and data is not None:
        raise click.UsageError("--apply acts on this data dir's licenses, not on --data")
    result = run(
        state.settings,
        state.store if apply_tiers else None,
        since,
        license_id,
        apply=apply_tiers,
        data=data,
    )
    if as_json:
        print_json(result.to_json())
        return
    for outcome in result.actions or []:
        console.print(line(f"{outcome['licenseId']}: tier {outcome['tier']} {outcome['status']}"
                           f" ({outcome['detail']})"))  # fmt: skip
    found, start = result.verdicts, result.since
    if not found:
        console.print(f"No findings since {start:%Y-%m-%d %H:%M} UTC.")
        return
    table = id_table("license", "score", "recommendation", "flags", "evidence")
    for v in found:
        best = {f.detector: f for f in v.findings}
        evidence = "; ".join(f"{d}: {summary(f.evidence)}" for d, f in best.items())
        rec = v.recommendation + (" (escalate)" if v.escalate else "")
        table.add_row(line(v.license_id), f"{v.score:.2f}", rec, ", ".join(v.flags), line(evidence))
    console.print(table)
