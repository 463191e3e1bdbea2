"""Rules that run the generated product: server-start and visual verification (reference §2.3).

The service is started on a free loopback port (``{port}`` in its command, and
``PORT``), under the supervisor; it is stopped afterwards, its whole process
group, whatever happened.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager

from connectsw.core import supervisor
from connectsw.core.models import Artifact, RuleResult
from connectsw.gates.base import GateContext, GateRule
from connectsw.gates.detect import BadCommand, page_file, service_command
from connectsw.gates.process import Background, free_port, shown, tail, wait_http

DEFAULT_SERVER_TIMEOUT = 30.0
DEFAULT_VISUAL_TIMEOUT = 60.0
DEFAULT_CHROMIUM = "/usr/bin/chromium"


class ServiceDown(Exception):
    """The service did not answer its health URL (the message is the evidence)."""


@contextmanager
def running_service(ctx: GateContext, timeout: float) -> Iterator[tuple[str, str]]:
    """Start the workspace's service and wait for its health URL to answer 2xx.

    Yields (base URL, evidence line). Raises :class:`ServiceDown` with the
    evidence if it does not answer within ``timeout`` seconds or its command cannot be
    split into words, and
    :class:`~connectsw.core.supervisor.SupervisorError` if it cannot start. The
    service's process group is ended on the way out, in every case.
    """
    try:
        template = service_command(ctx.workspace, ctx.config, ctx.results)
    except BadCommand as exc:
        raise ServiceDown(str(exc)) from None
    if template is None:
        raise ServiceDown("no start command found")
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in template]
    env = supervisor.agent_env({"PORT": str(port), "HOST": "127.0.0.1"})
    health = str(ctx.config.get("health_path") or "/health")
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    deadline = started + timeout
    # The service's own deadline is later: it is stopped by us, not by its timeout.
    service = Background(ctx, argv, env=env, deadline=deadline + 3600.0)
    service.start()
    try:
        status, what = wait_http(
            base + health, deadline, alive=lambda: service.running, stopped=ctx.stopped
        )
        label = shown(argv)
        if status is None:
            service.stop()
            raise ServiceDown(
                f"$ {label}\nGET {health}: {what} within {timeout:g}s\n{tail(service.output())}"
            )
        yield (
            base,
            f"$ {label}\nGET {health}: HTTP {status} after {time.monotonic() - started:.1f}s",
        )
    finally:
        service.stop()


class ServerStartRule(GateRule):
    """The generated service starts and answers its health URL within a timeout."""

    isolation = "thread"  # built-in: its commands run under the supervisor
    name = "server-start"
    description = (
        "The service starts and answers GET gates.health_path with 2xx within "
        "gates.server_timeout seconds; then it is stopped (its whole process group)."
    )
    applies_to = ("service",)

    def evaluate(self, ctx: GateContext) -> RuleResult:
        timeout = float(ctx.config.get("server_timeout", DEFAULT_SERVER_TIMEOUT))
        try:
            with running_service(ctx, timeout) as (_, evidence):
                pass
        except ServiceDown as exc:
            return self.failed(
                str(exc),
                "Make the service start and answer its health URL "
                f"({ctx.config.get('health_path') or '/health'}) with 2xx "
                f"within {timeout:g}s; its output is shown above.",
            )
        except supervisor.SupervisorError as exc:
            return self.failed(
                f"cannot start the service: {exc.reason}",
                "Give the service a start command that runs (gates.server_command).",
            )
        return self.passed(evidence + "\nstopped: process group ended")


class VisualRule(GateRule):
    """Headless Chromium loads the generated page: not blank, no console errors."""

    isolation = "thread"  # built-in: its commands run under the supervisor
    name = "visual"
    description = (
        "Headless Chromium loads the generated page (served by the service when there is "
        "one): its screenshot is not blank and the console shows no errors; the "
        "screenshot is kept as evidence."
    )
    applies_to = ("page",)

    def evaluate(self, ctx: GateContext) -> RuleResult:
        chromium = str(ctx.config.get("chromium") or DEFAULT_CHROMIUM)
        if shutil.which(chromium) is None:
            return self.not_run(
                "chromium not installed",
                f"Install Chromium (Debian: apt-get install chromium) or set gates.chromium; "
                f"{chromium} was not found.",
            )
        timeout = float(ctx.config.get("visual_timeout", DEFAULT_VISUAL_TIMEOUT))
        server_timeout = float(ctx.config.get("server_timeout", DEFAULT_SERVER_TIMEOUT))
        page_path = str(ctx.config.get("page_path") or "/")
        try:
            if "service" in ctx.traits:
                with running_service(ctx, server_timeout) as (base, _):
                    return self._judge(ctx, chromium, base + page_path, timeout)
            page = page_file(ctx.workspace)
            assert page is not None  # applies_to: "page"
            return self._judge(ctx, chromium, page.resolve().as_uri(), timeout)
        except ServiceDown as exc:
            return self.failed(
                f"the page's service did not start:\n{exc}",
                "Make the service start so that its page can be shown (see server-start).",
            )
        except supervisor.SupervisorError as exc:
            return self.failed(f"cannot start: {exc.reason}", "Check gates.chromium.")

    def _judge(self, ctx: GateContext, chromium: str, url: str, timeout: float) -> RuleResult:
        # asyncio and the DevTools client: only when a page is judged
        from connectsw.gates.chromium import ChromiumError, screenshot

        try:
            shot = screenshot(ctx, chromium, url, time.monotonic() + timeout)
        except ChromiumError as exc:
            if str(exc).startswith("stopped: "):
                return self.failed(f"{url}: {exc}", "")
            return self.failed(
                f"{url}: {exc}", "Make the page load within gates.visual_timeout seconds."
            )
        artifacts = []
        if shot.png:
            stage = ctx.stage.index + 1
            png = ctx.artifacts() / f"visual-stage{stage}-round{ctx.execution.round}.png"
            png.write_bytes(shot.png)
            artifacts.append(
                Artifact(
                    type="screenshot",
                    path=str(png),
                    description=f"{url} in headless Chromium",
                )
            )
        ink = shot.differing / shot.total if shot.total else 0.0
        lines = [
            f"{url} in headless Chromium ({shot.seconds:.1f}s)",
            f"pixels differing from the background: {shot.differing} of {shot.total}"
            f" ({ink:.2%}), {shot.colours} colours",
            f"console errors: {len(shot.errors)}",
            *(f"  {e}"[:300] for e in shot.errors[:10]),
        ]
        if artifacts:
            lines.append(f"screenshot: {artifacts[0].path}")
        problems = []
        if shot.navigation_error:
            problems.append(f"the page did not load ({shot.navigation_error})")
        if shot.blank:
            problems.append("the page is blank")
        if shot.errors:
            problems.append(f"the console shows {len(shot.errors)} error(s)")
        details = "\n".join(lines)
        if problems:
            return self.failed(
                details,
                "Fix the page: " + "; ".join(problems) + " (see the errors and the screenshot).",
                score=0.5 if not shot.blank and not shot.navigation_error else 0.0,
                artifacts=artifacts,
            )
        return self.passed(details, artifacts=artifacts)
