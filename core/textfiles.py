"""Files a user gives ConnectSW (task graphs, config files, prompt files, key, password
and secret files, SQL files): one rule for reading them.

- **Encoding**: UTF-8; a UTF-8, UTF-16 or UTF-32 byte-order mark is honoured.
  Undecodable bytes are named by line and offset (and, where the content may be
  shown, by value): ``not valid UTF-8 (byte 0xe9 at line 2, offset 14)``. Text
  holding NUL bytes is refused (UTF-16 or UTF-32 without a byte-order mark).
- **Kind and size**: only a regular file is read (a FIFO, a device or a socket is
  refused before a byte is read); callers give a bound and a larger file is refused.
- **Missing files**: a path that does not exist, and a symbolic link whose target
  does not exist, are "not found"; the second says so (``not found (a broken
  symbolic link to /old/place)``), since ``ls`` shows such a file.
- **Only regular files**: a named pipe (FIFO), device or socket is refused before
  anything waits on it (``cannot read: it is a named pipe (FIFO), not a regular
  file``); opening a FIFO with no writer would block for ever (issue 5, kind 10).

- **Paths the system refuses**: any ``OSError`` from checking a path a user gave (a
  name over 255 bytes, a loop of symbolic links, a parent that is a file, no
  permission) is a one-line input error with a lower-case reason (:func:`os_reason`,
  :func:`check_path`), never "internal error" (issue 5, kind 10). ``Path.exists()``
  and ``is_symlink()`` raise for ``ENAMETOOLONG`` and ``EACCES``: a check of a user's
  path goes through :func:`check_path`.

Callers turn :class:`TextFileError` into their own error type (``PlanError``,
``ConfigError``) with the file's name in front.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8", "UTF-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32"),
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32"),
    (b"\xff\xfe", "utf-16-le", "UTF-16"),
    (b"\xfe\xff", "utf-16-be", "UTF-16"),
)


class TextFileError(Exception):
    """A file that cannot be read as text; the message is one line without the file name."""


_REASONS = {
    errno.ENAMETOOLONG: "name too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENOTDIR: "a parent is not a directory",
    errno.ENOENT: "not found",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
}


def os_reason(exc: OSError) -> str:
    """Why the system refused a path, as a lower-case phrase for a one-line message
    (``"name too long"``, ``"too many levels of symbolic links"``, ``"a parent is not a
    directory"``, ``"permission denied"``...); never the path itself."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    return (exc.strerror or type(exc).__name__).lower()


@contextlib.contextmanager
def check_path(label: str, error: Callable[[str], Exception]) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into ``error(f"{label}: {os_reason(exc)}")``.

    The one rule for an OSError met while checking a path a user gave (a workspace, a
    graph, config or key file, an output directory): ``label`` names it (``"workspace
    /x"``), ``error`` is the caller's input error (``WorkspaceError``, ``ConfigError``).
    """
    try:
        yield
    except OSError as exc:
        raise error(f"{label}: {os_reason(exc)}") from None


def decode(data: bytes, *, show_bytes: bool = True) -> str:
    """The text of a file's bytes: UTF-8, or what its byte-order mark says.

    ``show_bytes`` False leaves the value of an undecodable byte out of the message
    (a config file's byte may belong to a password); its position is always given.

    Raises:
        TextFileError: bytes that are not valid in the encoding, or NUL characters.
    """
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                offset = exc.start + len(bom)
                raise TextFileError(
                    f"not valid {name} (bad data at line {_line(data, offset)}, offset {offset})"
                ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        value = f"byte 0x{data[exc.start]:02x} at " if show_bytes else ""
        hint = (
            "; it looks like UTF-16 or UTF-32 without a byte-order mark: save it as UTF-8"
            if b"\x00" in data[:4]
            else ""
        )
        raise TextFileError(
            f"not valid UTF-8 ({value}line {_line(data, exc.start)}, offset {exc.start}){hint}"
        ) from None
    if "\x00" in text:
        raise TextFileError(
            "contains NUL bytes (UTF-16 or UTF-32 without a byte-order mark?); save it as UTF-8"
        )
    return text


def _line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` is when it is neither a regular file nor a directory
    (``"a named pipe (FIFO)"``, ``"a socket"``, ``"a character device"``...); None otherwise."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _check_regular(mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise TextFileError("cannot read: it is a directory")
    kind = special_kind(mode)
    if kind is not None:
        raise TextFileError(f"cannot read: it is {kind}, not a regular file")


def is_regular(path: Path) -> bool:
    """True when ``path`` (its target, for a symbolic link) is a regular file; never waits."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading in binary, refusing anything but a regular file.

    The file is opened with ``O_NONBLOCK`` (a FIFO with no writer does not block the
    open) and checked with ``fstat`` on the open descriptor, so no swap between a
    check and the open can hand a FIFO, device or socket to the reader.

    Raises:
        TextFileError: not a regular file (its kind is named; a directory says so).
        OSError: from the open (FileNotFoundError, PermissionError, ...).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _check_regular(os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """At most ``limit + 1`` bytes of ``path`` (all of it if ``limit`` is None).

    Only a regular file (or a symbolic link to one) is read: a FIFO, a device such as
    ``/dev/zero`` or a socket is refused before a byte is read, so such a file can
    neither hang a command (opening a FIFO waits for a writer) nor fill its memory.
    The file is opened without blocking and checked by ``fstat`` of what was opened.

    Raises:
        TextFileError: missing (see :func:`not_found`), not a regular file (its kind
            is named), or unreadable, with the operating system's reason.
    """
    try:
        fh = open_regular(path)
    except FileNotFoundError:
        raise TextFileError(not_found(path)) from None
    except IsADirectoryError:
        raise TextFileError("cannot read: it is a directory") from None
    except OSError as exc:
        with contextlib.suppress(OSError):  # a socket cannot be opened (ENXIO): name it
            _check_regular(os.stat(path).st_mode)
        raise TextFileError(f"cannot read: {os_reason(exc)}") from None
    with fh:
        try:
            return fh.read() if limit is None else fh.read(limit + 1)
        except OSError as exc:
            raise TextFileError(f"cannot read: {os_reason(exc)}") from None


def read_text(path: Path, limit: int, *, show_bytes: bool = True) -> str:
    """The text of a small file a user gives (a key, a password, a prompt), by this
    module's rule: at most ``limit`` bytes, UTF-8 or what its byte-order mark says.

    ``show_bytes`` False for a file holding a secret: an undecodable byte's value is
    left out of the message (its position is given).

    Raises:
        TextFileError: missing, a directory, unreadable, larger than ``limit`` bytes,
            or not text (:func:`decode`); one line without the file's name.
    """
    data = read_bytes(path, limit)
    if len(data) > limit:
        raise TextFileError(f"larger than {limit} bytes")
    return decode(data, show_bytes=show_bytes)


def not_found(path: Path) -> str:
    """``"not found"``, or ``"not found (a broken symbolic link to TARGET)"``."""
    try:
        target = os.readlink(path)
    except OSError:
        return "not found"
    return f"not found (a broken symbolic link to {target})"


def is_broken_link(path: Path) -> bool:
    """True when ``path`` is a symbolic link whose target does not exist (False when
    the system refuses the path: its reason is given by whoever reads it)."""
    try:
        return path.is_symlink() and not path.exists()
    except OSError:
        return False
