"""The anti-piracy scan while the server runs (issue 7 part 7), off the event loop.

Every ``antipiracy.scan_interval`` seconds a thread runs the detectors over the last
``antipiracy.scan_window`` of usage events (licensing/analytics/report.py) and, with
``antipiracy.scan_apply``, takes the recommended response tiers
(licensing/analytics/respond.py: once per finding). Each scan is counted in
``connectsw_antipiracy_scans_total`` and sets ``connectsw_antipiracy_flagged``.
"""

from __future__ import annotations

import asyncio
import logging

from connectsw.conf.settings import Settings
from connectsw.core.stores import Store

log = logging.getLogger("connectsw.web.scans")


def scan_once(settings: Settings, store: Store) -> tuple[int, int]:
    """One scan (the CLI's and the admin API's, licensing/analytics/service.py): (licenses
    flagged, response actions taken). Blocking."""
    from connectsw.licensing.analytics.service import scan

    conf = settings.antipiracy
    result = scan(settings, store, conf.scan_window, apply=conf.scan_apply)
    flagged = [v for v in result.verdicts if v.recommendation != "none"]
    taken = result.actions or []
    return len(flagged), sum(1 for o in taken if o["status"] == "done")


async def scan_periodically(settings: Settings, store: Store, on_scan: object) -> None:
    """Forever: wait ``scan_interval`` s, scan in a thread, report through ``on_scan``
    (called with flagged, taken). A failing scan is logged and retried next time."""
    every = settings.antipiracy.scan_interval
    if every <= 0:
        return
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        try:
            flagged, taken = await loop.run_in_executor(None, scan_once, settings, store)
        except Exception:
            log.warning("the anti-piracy scan failed; next one in %g s", every, exc_info=True)
            continue
        on_scan(flagged, taken)  # type: ignore[operator]
        if flagged:
            log.warning("anti-piracy scan: %d license(s) flagged, %d action(s)", flagged, taken)
