"""How long light commands take, next to ``python -c "import click"`` (goal: <= 3x).

Each command runs N times as a fresh process (wall-clock seconds, median), with
an empty temporary data dir so ``status`` lists nothing. The package's bytecode is
compiled first, as ``pip install`` does: in a source checkout run with
``PYTHONDONTWRITEBYTECODE=1`` every module would otherwise be compiled again in
each process (about 0.1 s that no installed copy pays). Usage::

    .venv/bin/python bench/cli_startup.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 3.0


def connectsw() -> list[str]:
    """The console script next to this interpreter, else ``python -m connectsw.cli.main``."""
    script = Path(sys.executable).with_name("connectsw")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "connectsw.cli.main"]


def compile_package() -> None:
    """Write the bytecode of the installed ``connectsw`` package (its tests aside)."""
    import compileall
    import re

    import connectsw

    root = Path(connectsw.__file__).parent
    compileall.compile_dir(root, quiet=1, rx=re.compile(r"[/\\](tests|\.venv)[/\\]"))


def median_seconds(cmd: list[str], env: dict[str, str], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` runs of ``cmd`` (each must exit 0)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per command (median)")
    args = parser.parse_args()
    compile_package()
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
        env.update(CONNECTSW_DATA_DIR=data, XDG_DATA_HOME=data, NO_COLOR="1")
        base = median_seconds([sys.executable, "-c", "import click"], env, args.repeats)
        label = 'python -c "import click"'
        print(f"{label:28} {base:7.3f} s")
        worst = 0.0
        for sub in (["--help"], ["plugins"], ["status"]):
            took = median_seconds([*connectsw(), *sub], env, args.repeats)
            ratio = took / base
            worst = max(worst, ratio)
            print(f"{'connectsw ' + ' '.join(sub):28} {took:7.3f} s  {ratio:5.1f}x")
    print(f"goal <= {GOAL:.0f}x: {'met' if worst <= GOAL else 'not met'} (worst {worst:.1f}x)")


if __name__ == "__main__":
    main()
