"""The build rule: the workspace's project compiles and installs (reference §2.3 build-test)."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from connectsw.core import supervisor, textfiles
from connectsw.core.models import RuleResult
from connectsw.gates.base import GateContext, GateRule
from connectsw.gates.detect import SKIP_DIRS
from connectsw.gates.process import run_step, shown, tail

DEFAULT_TIMEOUT = 600.0


def _copy(workspace: Path, into: Path) -> Path:
    """A copy of the workspace without VCS, virtualenv and dependency folders, and
    without FIFOs, sockets and devices (shutil refuses to copy them; a build never
    needs them)."""
    target = into / "src"
    by_name = shutil.ignore_patterns(*SKIP_DIRS, "*.egg-info")

    def ignore(folder: str, names: list[str]) -> set[str]:
        return set(by_name(folder, names)) | {
            name for name in names if _special(os.path.join(folder, name))
        }

    shutil.copytree(workspace, target, ignore=ignore, symlinks=True)
    return target


def _special(path: str) -> bool:
    """True for a FIFO, socket or device (not followed through a symbolic link)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISLNK(mode) and textfiles.special_kind(mode) is not None


class BuildRule(GateRule):
    """The project builds: Python compiles (and a pyproject/setup.py project builds a
    wheel), a Node project installs and runs its ``build`` script; or ``gates.build_command``.

    Everything runs in a copy of the workspace, which is left as it was.
    """

    isolation = "thread"  # built-in: its commands run under the supervisor
    name = "build"
    description = (
        "The project builds: Python files compile and a Python project builds its wheel "
        "(pip, no network); a Node project runs npm install and its build script."
    )
    applies_to = ("python", "node")

    def applies(self, ctx: GateContext) -> bool:
        return bool(ctx.config.get("build_command")) or super().applies(ctx)

    def _steps(self, ctx: GateContext, out: Path) -> list[list[str] | str]:
        configured = str(ctx.config.get("build_command") or "")
        if configured:
            return [configured]
        steps: list[list[str] | str] = []
        kinds = ctx.traits
        if "python" in kinds:
            skip = "|".join(sorted(SKIP_DIRS))
            steps.append([sys.executable, "-m", "compileall", "-q", "-x", f"/({skip})/", "."])
        if "python-project" in kinds:
            steps.append(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--no-deps",
                    "--no-build-isolation",
                    "--no-index",
                    "--quiet",
                    "--wheel-dir",
                    str(out),
                    ".",
                ]
            )
        if "node" in kinds:
            steps.append(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"])
            steps.append(["npm", "run", "build", "--if-present"])
        return steps

    def evaluate(self, ctx: GateContext) -> RuleResult:
        """Run each build step in a copy of the workspace; the first failure fails the rule."""
        timeout = float(ctx.config.get("build_timeout", DEFAULT_TIMEOUT))
        with tempfile.TemporaryDirectory(prefix="connectsw-build-") as tmp:
            src = _copy(ctx.workspace, Path(tmp))
            out = Path(tmp) / "out"
            env = supervisor.agent_env(
                {"PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"), "PIP_NO_INPUT": "1"}
            )
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # compileall must write to compile
            done: list[str] = []
            for step in self._steps(ctx, out):
                label = (
                    step if isinstance(step, str) else shown(step).replace(sys.executable, "python")
                )
                outcome, why = run_step(
                    ctx, step, timeout, cwd=src, env=env, shell=isinstance(step, str)
                )
                if outcome is None:
                    return self.failed(why, "Make the build finish within gates.build_timeout.")
                if outcome.returncode != 0:
                    return self.failed(
                        f"$ {label}\nexit {outcome.returncode}\n{tail(outcome.output)}",
                        f"The build fails at `{label}`: fix the errors it shows.",
                    )
                last = tail(outcome.output, 3)
                done.append(f"$ {label}: ok" + (f"\n{last}" if last else ""))
            wheels = sorted(p.name for p in out.glob("*.whl")) if out.is_dir() else []
            if wheels:
                done.append("built " + ", ".join(wheels))
        return self.passed("\n".join(done))
