"""Ordinary bad input is a one-line error with its own exit code, never "internal error" (70).

Each case is a kind from issue 5 (fault 10), run through the real ``main``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connectsw.cli.main import main
from connectsw.conf.settings import get_settings
from connectsw.core.errors import ExitCode

ALIAS_BOMB = """name: bomb
tasks:
  - id: a
    agent: noop
    with:
      a: &a ["x","x","x","x","x","x","x","x","x","x"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    get_settings.cache_clear()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "utf8.yaml",
            b"name: x\ntasks:\n  - id: a\n    agent: noop\n    title: caf\xe9\n",
            "UTF-8",
        ),
        ("deep.json", b"[" * 100_000, "deep"),
        ("bomb.yaml", ALIAS_BOMB.encode(), "alias"),
        (
            "dup.yaml",
            b"name: x\ntasks:\n  - id: a\n    agent: noop\n    needs: []\n    needs: []\n",
            "duplicate key",
        ),
        ("huge.yaml", b"name: x\ntasks:\n" + b"  - {id: a, agent: noop}\n" * 60_000, "larger"),
    ],
)
def test_bad_graph_files_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, expected: str
) -> None:
    (tmp_path / name).write_bytes(content)
    start = time.monotonic()
    code, err = run_cli(capsys, "run", str(tmp_path / name), "-w", str(tmp_path / "ws"))
    assert time.monotonic() - start < 5
    assert code == ExitCode.INVALID_INPUT, err
    assert expected.lower() in one_line_error(err).lower()
    assert not (tmp_path / "ws").exists()


def test_a_utf16_graph_file_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "name: x\ntasks:\n  - id: a\n    agent: noop\n"
    (tmp_path / "g.yaml").write_bytes(text.encode("utf-16"))
    code, err = run_cli(capsys, "run", str(tmp_path / "g.yaml"), "--plan-only")
    assert code == 0, err


def test_shell_outputs_outside_the_workspace_are_refused_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for output in ("../../x", "/etc/passwd-copy"):
        (tmp_path / "g.yaml").write_text(
            "name: x\ntasks:\n  - id: a\n    agent: shell\n"
            f"    with: {{command: 'touch ran', outputs: ['{output}']}}\n"
        )
        code, err = run_cli(capsys, "run", str(tmp_path / "g.yaml"), "-w", str(tmp_path / "ws"))
        assert code == ExitCode.INVALID_INPUT, err
        assert "outputs" in one_line_error(err)
        assert not (tmp_path / "ws" / "ran").exists()


def test_a_data_dir_under_a_file_is_a_store_error_even_for_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CONNECTSW_DATA_DIR", str(tmp_path / "file" / "data"))
    code, err = run_cli(capsys, "status")
    assert code == ExitCode.STORE, err
    one_line_error(err)


def test_a_workspace_under_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "g.yaml").write_text("name: x\ntasks:\n  - id: a\n    agent: noop\n")
    code, err = run_cli(
        capsys, "run", str(tmp_path / "g.yaml"), "--yes", "-w", str(tmp_path / "file" / "ws")
    )
    assert code == ExitCode.INVALID_INPUT, err
    assert "file" in one_line_error(err)


@pytest.mark.parametrize("address", ["tcp://", "not a url", "tcp://host:notaport", "http://x:1"])
def test_a_malformed_scheduler_address_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    address: str,
) -> None:
    monkeypatch.setenv("CONNECTSW_DASK__SCHEDULER_ADDRESS", address)
    (tmp_path / "g.yaml").write_text("name: x\ntasks:\n  - id: a\n    agent: noop\n")
    code, err = run_cli(capsys, "run", str(tmp_path / "g.yaml"), "--yes", "-w", str(tmp_path / "w"))
    assert code == ExitCode.INVALID_INPUT, err
    one_line_error(err)


def test_a_libpq_store_string_is_never_echoed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "CONNECTSW_STORE__URL", "host=127.0.0.1 port=1 user=u password=Hunter2secret"
    )
    code, err = run_cli(capsys, "status")
    assert code == ExitCode.INVALID_INPUT, err
    assert "Hunter2" not in one_line_error(err)


@pytest.mark.parametrize("limit", ["99999999999999999999", "0", "-1"])
def test_an_out_of_range_limit_is_a_usage_error(cli, limit):
    result = cli("status", "--json", "--limit", limit)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


LONG = "d" * 300  # a component over NAME_MAX (255 bytes): ENAMETOOLONG


@pytest.mark.parametrize(
    "args",
    [
        ("run", "{tmp}/g.yaml", "--yes", "-w", "{tmp}/" + LONG),
        ("run", "{tmp}/g.yaml", "--plan-only", "-w", "{tmp}/" + LONG + "/sub"),
        ("new", "product", "x", "--plan-only", "-w", "{tmp}/" + LONG + "/sub"),
        ("run", "{tmp}/" + LONG + ".yaml", "--yes", "-w", "{tmp}/ws"),
        ("run", "{tmp}/g.yaml", "--yes", "-w", "{tmp}/loop/ws"),
        ("plugin", "new", "x", "--directory", "{tmp}/" + LONG),
        ("gates", "check", "--workspace", "{tmp}/" + LONG),
        ("analytics", "import", "{tmp}/" + LONG + ".csv"),
    ],
    ids=[
        "workspace",
        "workspace-plan-only",
        "new-product",
        "graph-file",
        "workspace-loop",
        "plugin-directory",
        "gates-workspace",
        "analytics-import",
    ],
)
def test_a_user_path_the_system_refuses_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    """Trial 6 (issue 5, kind 10): a name over 255 bytes was "internal error" (exit 70)."""
    (tmp_path / "g.yaml").write_text("name: x\ntasks:\n  - id: a\n    agent: noop\n")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    code, err = run_cli(capsys, *(a.format(tmp=tmp_path) for a in args))
    assert code == ExitCode.INVALID_INPUT, err
    line = one_line_error(err)
    assert line.endswith(("name too long", "too many levels of symbolic links")), line


@pytest.mark.parametrize("variable", ["CONNECTSW_CONFIG", "CONNECTSW_GRANT_KEY_FILE"])
def test_a_settings_path_the_system_refuses_is_one_line_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    monkeypatch.setenv(variable, str(tmp_path / LONG))
    (tmp_path / "g.yaml").write_text("name: x\ntasks:\n  - id: a\n    agent: noop\n")
    code, err = run_cli(capsys, "run", str(tmp_path / "g.yaml"), "--yes", "-w", str(tmp_path / "w"))
    assert code == ExitCode.INVALID_INPUT, err
    assert one_line_error(err).endswith("name too long")


def test_a_data_dir_the_system_refuses_is_a_store_error_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a data dir under a file (exit 6); it was "not readable credentials: `connectsw
    login` again" (a name too long is no login problem)."""
    monkeypatch.setenv("CONNECTSW_DATA_DIR", str(tmp_path / LONG))
    code, err = run_cli(capsys, "status")
    assert code == ExitCode.STORE, err
    line = one_line_error(err)
    assert line.endswith("name too long") and "login" not in line, line
