"""The SMTP password file is read as every user file is (core/textfiles.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectsw.conf.settings import SmtpSettings
from connectsw.core.errors import ConfigError
from connectsw.licensing.mail import MAX_PASSWORD_BYTES, smtp_password


def test_a_utf16_password_file_gives_its_password(tmp_path: Path) -> None:
    """Found by the new-user trial: its bytes were decoded as UTF-8 with replacement, so
    a UTF-16 file (Notepad's "Unicode") silently gave another password."""
    path = tmp_path / "password"
    path.write_bytes("hunter2\n".encode("utf-16"))
    assert smtp_password(SmtpSettings(password_file=path)) == "hunter2"


def test_a_bad_byte_is_refused_by_place_without_the_password(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_bytes(b"hunt\xe9r2\n")
    with pytest.raises(ConfigError) as info:
        smtp_password(SmtpSettings(password_file=path))
    assert str(info.value) == (f"smtp.password_file {path}: not valid UTF-8 (line 1, offset 4)")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "not found"),
        (b"x" * (MAX_PASSWORD_BYTES + 1), f"larger than {MAX_PASSWORD_BYTES} bytes"),
    ],
)
def test_a_missing_or_huge_file_is_one_line(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "password"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        smtp_password(SmtpSettings(password_file=path))
    assert str(info.value) == f"smtp.password_file {path}: {expected}"
