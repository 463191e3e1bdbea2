"""Installing a plugin distribution for a test: ``pip install --target``, no network.

One place for the pip command line the suite's plugin tests use (the conftest's
``pip_install`` fixture, the manager and author-fault tests, the guide's test).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

#: ``pip install`` of local sources only: no dependencies, no build isolation.
PIP_INSTALL = [
    sys.executable,
    "-m",
    "pip",
    "install",
    "--quiet",
    "--no-deps",
    "--no-build-isolation",
    "--disable-pip-version-check",
    "--no-cache-dir",
]


def pip_install(sources: list[Path], work: Path) -> Path:
    """Copy each distribution in ``sources`` under ``work/src`` (builds write into
    their source) and install them all into ``work/site``; returns that folder."""
    copies = []
    for source in sources:
        copy = work / "src" / source.name if len(sources) > 1 else work / "src"
        shutil.copytree(
            source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
        )
        copies.append(str(copy))
    target = work / "site"
    subprocess.run(
        [*PIP_INSTALL, "--target", str(target), *copies],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return target
