"""Every code block of docs/plugins.md runs, in order, as a reader would run them.

Each fenced block's info string says what happens to it:

- ``python``: runs in a new interpreter (in the guide's folder, with what the guide
  installed so far on its path) and must exit 0;
- ``python file=PATH``, ``toml file=PATH``, ``yaml file=PATH``: written to PATH in the
  guide's folder (Python is compiled too), for later blocks to install or run;
- ``console``: each ``$ `` line runs with bash in the guide's folder and must exit
  0. ``pip install X`` is run as ``pip install --no-deps --no-build-isolation --target
  SITE X`` (SITE is then on every later command's path): the guide never installs
  into the suite's own environment. The engine's Dask cluster runs in-process.
- ``output``: what the previous ``console`` block printed: each of its lines appears
  in that output, in order.

A block with any other info string fails the test: every block is either run or
checked.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pip_target import PIP_INSTALL

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugins.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.M | re.S)
KINDS = {"python", "toml", "yaml", "console", "output"}


@dataclass
class Block:
    """One fenced code block: its info string's kind, ``file=`` target, text, line."""

    kind: str
    file: str | None
    text: str
    line: int


def blocks(markdown: str) -> list[Block]:
    """The fenced blocks of ``markdown`` in order."""
    found = []
    for match in FENCE.finditer(markdown):
        words = match.group(1).split()
        kind = words[0] if words else ""
        options = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        line = markdown.count("\n", 0, match.start()) + 1
        found.append(Block(kind, options.get("file"), match.group(2), line))
    return found


class Reader:
    """Runs the guide's blocks in a folder of its own."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.site = work / "_site"
        bin_dir = Path(sys.executable).parent
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
        for key in ("COLUMNS", "LINES", "FORCE_COLOR", "CI"):
            env.pop(key, None)
        env.update(
            PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            PYTHONPATH=str(self.site),
            PYTHONDONTWRITEBYTECODE="1",
            NO_COLOR="1",
            COLUMNS="200",
            CONNECTSW_DATA_DIR=str(work / "_data"),
            CONNECTSW_DASK__PROCESSES="false",
            CONNECTSW_DASK__N_WORKERS="1",
            CONNECTSW_ENGINE__RETRY_BACKOFF="0.01",
            TMPDIR=str(work),
        )
        self.env = env
        self.last_output = ""

    def command(self, line: str) -> str:
        words = shlex.split(line)
        if words[:2] == ["pip", "install"]:
            args = [w for w in words[2:] if w not in ("-e", "--editable")]
            return shlex.join(
                [
                    *PIP_INSTALL,
                    "--upgrade",
                    "--target",
                    str(self.site),
                    *(a.split("[")[0] for a in args),
                ]
            )
        return line

    def run(self, block: Block) -> None:
        where = f"docs/plugins.md line {block.line}"
        if block.kind not in KINDS:
            raise AssertionError(f"{where}: a block must be one of {sorted(KINDS)}")
        if block.file is not None:
            target = self.work / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
            if block.kind == "python":
                compile(block.text, block.file, "exec")
            return
        if block.kind == "python":
            proc = subprocess.run(
                [sys.executable, "-c", block.text],
                cwd=self.work,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert proc.returncode == 0, f"{where}:\n{proc.stdout}\n{proc.stderr}"
            self.last_output = proc.stdout
        elif block.kind == "console":
            outputs = []
            for line in block.text.splitlines():
                if not line.startswith("$ "):
                    raise AssertionError(f"{where}: console lines start with '$ ': {line!r}")
                proc = subprocess.run(
                    ["bash", "-c", self.command(line[2:])],
                    cwd=self.work,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert proc.returncode == 0, f"{where}: {line}\n{proc.stdout}\n{proc.stderr}"
                outputs.append(proc.stdout + proc.stderr)
            self.last_output = "\n".join(outputs)
        elif block.kind == "output":
            rest = self.last_output
            for expected in filter(None, (x.strip() for x in block.text.splitlines())):
                at = rest.find(expected)
                assert at >= 0, f"{where}: {expected!r} not printed:\n{self.last_output}"
                rest = rest[at + len(expected) :]
        else:
            raise AssertionError(f"{where}: a {block.kind} block needs file=PATH")


def test_the_guide_has_blocks_of_each_kind() -> None:
    kinds = {b.kind for b in blocks(GUIDE.read_text(encoding="utf-8"))}
    assert kinds == KINDS


@pytest.mark.slow
def test_every_block_runs(tmp_path: Path) -> None:
    reader = Reader(tmp_path)
    for block in blocks(GUIDE.read_text(encoding="utf-8")):
        reader.run(block)


def test_a_block_of_unknown_kind_fails(tmp_path: Path) -> None:
    reader = Reader(tmp_path)
    (block,) = blocks("x\n```bash\n$ true\n```\n")
    with pytest.raises(AssertionError, match="line 2: a block must be one of"):
        reader.run(block)


def test_failing_blocks_and_missing_output_fail(tmp_path: Path) -> None:
    reader = Reader(tmp_path)
    failing = blocks("```python\nraise SystemExit(3)\n```\n```console\n$ false\n```\n")
    for block in failing:
        with pytest.raises(AssertionError):
            reader.run(block)
    shown = blocks("```console\n$ echo one two\n```\n```output\ntwo\none\n```\n")
    reader.run(shown[0])
    with pytest.raises(AssertionError, match="'one' not printed"):
        reader.run(shown[1])
