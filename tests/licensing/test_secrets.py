"""License secrets: env or files, made once (0600) in local mode, required in production."""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from connectsw.conf.settings import load_settings
from connectsw.core.errors import ConfigError
from connectsw.licensing.certificates import new_signing_key, private_key_pem, public_key_pem
from connectsw.licensing.secrets import (
    MIN_ADMIN_TOKEN_CHARS,
    admin_token,
    license_secret,
    secrets_dir,
    signing_key,
)


def test_local_mode_creates_each_secret_once_with_mode_0600() -> None:
    settings = load_settings()
    secret = license_secret(settings)
    assert len(secret) >= 32 and license_secret(settings) == secret
    key = signing_key(settings)
    assert public_key_pem(signing_key(settings)) == public_key_pem(key)
    for name in ("license-secret", "signing-key.pem"):
        mode = stat.S_IMODE((secrets_dir(settings) / name).stat().st_mode)
        assert mode == 0o600


def test_processes_creating_the_secret_at_once_agree() -> None:
    settings = load_settings()
    seen: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: seen.append(license_secret(settings))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1


def test_production_mode_refuses_a_missing_secret_naming_what_to_set() -> None:
    settings = load_settings(mode="production")
    with pytest.raises(ConfigError, match="CONNECTSW_LICENSE_SECRET"):
        license_secret(settings)
    with pytest.raises(ConfigError, match="CONNECTSW_SIGNING_KEY_FILE"):
        signing_key(settings)
    assert not secrets_dir(settings).exists()


def test_secrets_from_env_and_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings(mode="production")
    monkeypatch.setenv("CONNECTSW_LICENSE_SECRET", "ab" * 32)
    assert license_secret(settings) == bytes.fromhex("ab" * 32)
    monkeypatch.delenv("CONNECTSW_LICENSE_SECRET")
    (tmp_path / "s.hex").write_text("cd" * 40 + "\n")
    monkeypatch.setenv("CONNECTSW_LICENSE_SECRET_FILE", str(tmp_path / "s.hex"))
    assert license_secret(settings) == bytes.fromhex("cd" * 40)
    key = new_signing_key()
    (tmp_path / "k.pem").write_bytes(private_key_pem(key))
    monkeypatch.setenv("CONNECTSW_SIGNING_KEY_FILE", str(tmp_path / "k.pem"))
    assert public_key_pem(signing_key(settings)) == public_key_pem(key)


@pytest.mark.parametrize("value", ["ab" * 8, "zz" * 32, ""])
def test_a_weak_or_malformed_secret_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    (tmp_path / "s.hex").write_text(value)
    monkeypatch.setenv("CONNECTSW_LICENSE_SECRET_FILE", str(tmp_path / "s.hex"))
    with pytest.raises(ConfigError) as err:
        license_secret(load_settings(mode="production"))
    assert (value not in str(err.value)) or not value


def test_a_signing_key_file_that_is_not_a_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "k.pem").write_text("not a key")
    monkeypatch.setenv("CONNECTSW_SIGNING_KEY_FILE", str(tmp_path / "k.pem"))
    with pytest.raises(ConfigError, match="not an Ed25519 private key"):
        signing_key(load_settings())
    monkeypatch.setenv("CONNECTSW_SIGNING_KEY_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="cannot read the signing key file"):
        signing_key(load_settings())


def test_the_admin_token_is_made_once_in_local_mode_with_mode_0600() -> None:
    settings = load_settings()
    token = admin_token(settings)
    assert len(token) >= MIN_ADMIN_TOKEN_CHARS and admin_token(settings) == token
    path = secrets_dir(settings) / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token


def test_the_admin_token_from_env_or_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings(mode="production")
    with pytest.raises(ConfigError, match="CONNECTSW_ADMIN_TOKEN or CONNECTSW_ADMIN_TOKEN_FILE"):
        admin_token(settings)
    assert not secrets_dir(settings).exists()
    monkeypatch.setenv("CONNECTSW_ADMIN_TOKEN", "t" * 40)
    assert admin_token(settings) == "t" * 40
    monkeypatch.delenv("CONNECTSW_ADMIN_TOKEN")
    (tmp_path / "admin").write_text("u" * 32 + "\n")
    monkeypatch.setenv("CONNECTSW_ADMIN_TOKEN_FILE", str(tmp_path / "admin"))
    assert admin_token(settings) == "u" * 32


@pytest.mark.parametrize("value", ["short-token", "x" * 20 + " " + "y" * 20, "é" * 40])
def test_a_short_or_unusable_admin_token_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CONNECTSW_ADMIN_TOKEN", value)
    with pytest.raises(ConfigError, match="CONNECTSW_ADMIN_TOKEN") as err:
        admin_token(load_settings())
    assert (value not in str(err.value)) or not value


@pytest.mark.parametrize(
    ("env", "value", "read"),
    [
        ("CONNECTSW_LICENSE_SECRET_FILE", "cd" * 40, lambda s: license_secret(s).hex()),
        ("CONNECTSW_ADMIN_TOKEN_FILE", "u" * 40, admin_token),
    ],
    ids=["license-secret", "admin-token"],
)
def test_secret_files_are_read_as_every_user_file_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str, value: str, read: Any
) -> None:
    """UTF-16 with its byte-order mark is text (found by the new-user trial: such a file
    was "not hexadecimal"); a bad byte is named by place only; a huge file is refused
    unread."""
    settings = load_settings(mode="production")
    path = tmp_path / "secret"
    monkeypatch.setenv(env, str(path))
    path.write_bytes((value + "\n").encode("utf-16"))
    assert read(settings) == value
    path.write_bytes(value[:10].encode() + b"\xff" + value[10:].encode())
    with pytest.raises(ConfigError) as err:
        read(settings)
    assert str(err.value).endswith(f"{path}: not valid UTF-8 (line 1, offset 10)")
    assert value[:10] not in str(err.value)
    path.write_bytes(b"a" * 1_000_000)
    with pytest.raises(ConfigError, match=r": larger than 65536 bytes$"):
        read(settings)
