"""The server's secrets: the license-key HMAC key, the certificate signing key, the admin token.

From the environment or files, never from the repository or a log:

- ``CONNECTSW_LICENSE_SECRET`` (hex, at least 64 digits = 32 bytes) or the file named by
  ``CONNECTSW_LICENSE_SECRET_FILE`` (the same hex text);
- ``CONNECTSW_SIGNING_KEY_FILE``: an Ed25519 private key, PKCS#8 PEM;
- ``CONNECTSW_ADMIN_TOKEN`` or the file named by ``CONNECTSW_ADMIN_TOKEN_FILE``: the
  bearer token of the admin endpoints (web/admin.py), at least 32 visible ASCII
  characters.

In local mode (``mode = "local"``) a missing one is created once in
``DATA_DIR/secrets/`` with file mode 0600, so a single machine works out of the
box. In production mode (``mode = "production"``) a missing or too short secret
is refused, naming what to set (DESIGN.md: a default secret is refused outside
local mode).
"""

from __future__ import annotations

import os
import re
import secrets as random
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectsw.conf.settings import Settings
from connectsw.core import textfiles
from connectsw.core.errors import ConfigError
from connectsw.licensing.certificates import load_private_key, new_signing_key, private_key_pem
from connectsw.licensing.keys import MIN_SECRET_BYTES

SECRET_ENV = "CONNECTSW_LICENSE_SECRET"
SECRET_FILE_ENV = "CONNECTSW_LICENSE_SECRET_FILE"
SIGNING_KEY_ENV = "CONNECTSW_SIGNING_KEY_FILE"
ADMIN_TOKEN_ENV = "CONNECTSW_ADMIN_TOKEN"
ADMIN_TOKEN_FILE_ENV = "CONNECTSW_ADMIN_TOKEN_FILE"
MIN_ADMIN_TOKEN_CHARS = 32
"""An admin token of 32 random characters or more cannot be guessed."""
_ADMIN_TOKEN = re.compile(rf"[\x21-\x7e]{{{MIN_ADMIN_TOKEN_CHARS},4096}}")


def secrets_dir(settings: Settings) -> Path:
    return settings.data_dir.expanduser() / "secrets"


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (atomically: a concurrent creator's file wins)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{random.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created it first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


MAX_SECRET_FILE_BYTES = 65_536
"""A secret file (license secret, admin token, signing key) is at most this many bytes."""


def _read(path: Path, what: str) -> bytes:
    """A key file's bytes (PEM), at most :data:`MAX_SECRET_FILE_BYTES`."""
    try:
        data = textfiles.read_bytes(path, MAX_SECRET_FILE_BYTES)
    except textfiles.TextFileError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(
            f"cannot read the {what} file {path}: larger than {MAX_SECRET_FILE_BYTES} bytes"
        )
    return data


def _read_text(path: Path, what: str) -> str:
    """A secret file's text, read as every user file is (core/textfiles.py: UTF-8 or a
    byte-order mark's); a bad byte is named by place, never quoted."""
    try:
        return textfiles.decode(_read(path, what), show_bytes=False)
    except textfiles.TextFileError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc}") from None


def _hex_secret(text: str, where: str) -> bytes:
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(f"the license secret in {where} is not hexadecimal") from None
    if len(value) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the license secret in {where} is too short: at least {MIN_SECRET_BYTES} bytes"
            f" ({2 * MIN_SECRET_BYTES} hex digits)"
        )
    return value


def license_secret(settings: Settings) -> bytes:
    """The HMAC secret of license-key tags (at least 32 bytes).

    Raises:
        ConfigError: unreadable, not hex or too short; or missing in production mode.
    """
    if value := os.environ.get(SECRET_ENV):
        return _hex_secret(value, SECRET_ENV)
    if name := os.environ.get(SECRET_FILE_ENV):
        return _hex_secret(_read_text(Path(name), "license secret"), name)
    path = secrets_dir(settings) / "license-secret"
    if not path.exists():
        if settings.mode != "local":
            raise ConfigError(
                f"no license secret: set {SECRET_ENV} or {SECRET_FILE_ENV}"
                f" (production mode has no default secret)"
            )
        _write_private(path, random.token_hex(MIN_SECRET_BYTES).encode("ascii"))
    return _hex_secret(_read_text(path, "license secret"), str(path))


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The Ed25519 key that signs license certificates.

    Raises:
        ConfigError: unreadable or not an Ed25519 PEM key; or missing in production mode.
    """
    name = os.environ.get(SIGNING_KEY_ENV)
    path = Path(name) if name else secrets_dir(settings) / "signing-key.pem"
    if not name and not path.exists():
        if settings.mode != "local":
            raise ConfigError(
                f"no certificate signing key: set {SIGNING_KEY_ENV}"
                f" (production mode has no default key)"
            )
        _write_private(path, private_key_pem(new_signing_key()))
    try:
        return load_private_key(_read(path, "signing key"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"{path} is not an Ed25519 private key (PKCS#8 PEM)") from None


def admin_token(settings: Settings) -> str:
    """The admin endpoints' token: 32 to 4096 visible ASCII characters (no spaces).

    Surrounding whitespace (a file's final newline) is ignored. In local mode a
    missing one is made once in ``DATA_DIR/secrets/admin-token`` (mode 0600),
    where an operator reads it.

    Raises:
        ConfigError: unreadable, too short or with other characters (never quoted);
            or missing in production mode, naming what to set.
    """
    if value := os.environ.get(ADMIN_TOKEN_ENV):
        where = ADMIN_TOKEN_ENV
    elif name := os.environ.get(ADMIN_TOKEN_FILE_ENV):
        value, where = _read_text(Path(name), "admin token"), name
    else:
        path = secrets_dir(settings) / "admin-token"
        if not path.exists():
            if settings.mode != "local":
                raise ConfigError(
                    f"no admin token: set {ADMIN_TOKEN_ENV} or {ADMIN_TOKEN_FILE_ENV}"
                    f" (production mode has no default token)"
                )
            _write_private(path, random.token_urlsafe(32).encode("ascii"))
        value, where = _read_text(path, "admin token"), str(path)
    token = value.strip()
    if not _ADMIN_TOKEN.fullmatch(token):
        raise ConfigError(
            f"the admin token in {where} is unusable: {MIN_ADMIN_TOKEN_CHARS} to 4096 visible"
            f" ASCII characters, no spaces (set {ADMIN_TOKEN_ENV} or {ADMIN_TOKEN_FILE_ENV})"
        )
    return token
