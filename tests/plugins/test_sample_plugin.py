"""The sample plugin's own tests (written with connectsw.testing) pass once it is installed."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent

RunTests = Callable[[Path, Path], subprocess.CompletedProcess[str]]


@pytest.mark.slow
def test_sample_plugin_tests_pass(
    pip_install: Callable[[Path], Path], run_plugin_tests: RunTests
) -> None:
    site = pip_install(HERE / "sample-plugin")
    proc = run_plugin_tests(site.parent / "src", site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout, proc.stdout
