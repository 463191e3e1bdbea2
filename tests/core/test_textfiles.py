"""core/textfiles.py's rule: only a regular file is read, and at most its bound.

Found by the new-user trial (trial 5, item 4; issue 5 kinds 5 and 10): key files named
by a setting were read whole, so ``/dev/zero`` took the machine's memory, and a FIFO
hung the command. Here ``/dev/zero`` is only ever read through the bounded reader.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from connectsw.core import textfiles


def _read_in_thread(path: Path, limit: int) -> bytes | BaseException:
    """Read ``path`` in a daemon thread; fail the test if it does not return in 10 s
    (opening a FIFO for reading waits for a writer)."""
    box: list[bytes | BaseException] = []

    def read() -> None:
        try:
            box.append(textfiles.read_bytes(path, limit))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(10)
    assert box, f"reading {path} did not return in 10 s"
    return box[0]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "key.pem"
    os.mkfifo(fifo)
    got = _read_in_thread(fifo, 100)
    assert isinstance(got, textfiles.TextFileError)
    assert str(got) == "cannot read: it is a named pipe (FIFO), not a regular file"


def test_a_device_is_refused_unread() -> None:
    got = _read_in_thread(Path("/dev/zero"), 100)
    assert isinstance(got, textfiles.TextFileError)
    assert str(got) == "cannot read: it is a character device, not a regular file"


def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(textfiles.TextFileError, match="it is a socket, not a regular file"):
            textfiles.read_bytes(path, 100)


def test_a_link_to_a_regular_file_is_read_and_a_large_file_only_to_its_bound(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big"
    with big.open("wb") as fh:
        fh.truncate(50_000_000)  # sparse: no disk used
    (tmp_path / "link").symlink_to(big)
    assert len(textfiles.read_bytes(tmp_path / "link", 10)) == 11
    with pytest.raises(textfiles.TextFileError, match="^larger than 10 bytes$"):
        textfiles.read_text(big, 10)


def test_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(textfiles.TextFileError, match="it is a directory"):
        textfiles.read_bytes(tmp_path, 10)


LONG = "d" * 300  # a path component over NAME_MAX (255 bytes): ENAMETOOLONG


def test_an_oserror_on_a_user_path_is_one_lower_case_reason(tmp_path: Path) -> None:
    """Trial 6 (issue 5, kind 10): ``Path.exists()`` and ``is_symlink()`` raise for a
    name too long (and for EACCES), which reached the user as "internal error"."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    (tmp_path / "file").write_text("")
    cases = {
        tmp_path / LONG: "name too long",
        loop / "x": "too many levels of symbolic links",
        tmp_path / "file" / "x": "a parent is not a directory",
    }
    for path, reason in cases.items():
        with pytest.raises(OSError) as info:
            os.lstat(path)
        assert textfiles.os_reason(info.value) == reason
        with pytest.raises(textfiles.TextFileError) as read:
            textfiles.read_bytes(path, 10)
        assert str(read.value) == f"cannot read: {reason}"
        assert textfiles.is_broken_link(path) is False
        assert textfiles.is_regular(path) is False


def test_check_path_turns_an_oserror_into_the_callers_error(tmp_path: Path) -> None:
    class Mine(Exception):
        pass

    with pytest.raises(Mine) as info, textfiles.check_path("graph file X", Mine):
        (tmp_path / LONG).exists()
    assert str(info.value) == "graph file X: name too long"
    assert info.value.__cause__ is None and info.value.__suppress_context__
