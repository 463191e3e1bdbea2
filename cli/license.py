"""``connectsw license ...``: the operator's commands for license keys and certificates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from connectsw.cli.context import State, console, err_console, json_option, pass_state, print_json
from connectsw.cli.render import id_table, line
from connectsw.core import textfiles
from connectsw.core.errors import ConfigError
from connectsw.licensing.models import License, LicenseStatus
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import Tier

TIERS = click.Choice([t.value for t in Tier], case_sensitive=False)
LICENSE_ID = click.argument("license_id")


def _licenses(state: State) -> Licenses:
    from connectsw.licensing.secrets import license_secret

    settings = state.settings
    return Licenses(state.store, license_secret(settings), settings.licensing.tiers)


def _json(record: License) -> dict[str, Any]:
    return record.model_dump(mode="json")


def _show(record: License) -> None:
    expires = f"{record.expires_at:%Y-%m-%d}" if record.expires_at else "never"
    console.print(line(("License ", ""), (record.id, "bold"), f": {record.status.value}"))
    console.print(
        line(
            f"Tier {record.tier.value}, {record.entitlements.max_users} user(s), "
            f"expires {expires}; e-mail ",
            record.email,
        )
    )
    if record.reason:
        console.print(line("Reason: ", record.reason))
    if record.throttle is not None:
        was = record.throttle.original.requests_per_hour
        now = record.entitlements.requests_per_hour
        since = f"{record.throttle.since:%Y-%m-%d %H:%M} UTC"
        console.print(
            line(f"Throttled since {since} ({now} requests per hour instead of {was}): ")
            + line(record.throttle.reason)
        )


@click.group("license")
def license_group() -> None:
    """Issue and manage license keys; sign and verify offline certificates (operators)."""


@license_group.command("issue")
@click.option("--tier", required=True, type=TIERS, help="FREE, PRO, BUSINESS or ENTERPRISE.")
@click.option("--email", required=True, help="Whom the license is for.")
@click.option("--users", type=int, help="Seats (default: the tier's).")
@click.option("--days", type=int, help="Days of validity (default: the tier's).")
@json_option
@pass_state
def issue(
    state: State, tier: str, email: str, users: int | None, days: int | None, as_json: bool
) -> None:
    """Issue a license and print its key: the only time the key is shown."""
    record, key = _licenses(state).issue(Tier(tier.upper()), email, users=users, days=days)
    if as_json:
        print_json({**_json(record), "key": key})
        return
    _show(record)
    console.print(line(("Key: ", "bold"), key))
    err_console.print("The key is shown once and not stored; keep it somewhere safe.")


@license_group.command("list")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Licenses listed (1 to 10000).",
)
@json_option
@pass_state
def list_licenses(state: State, limit: int, as_json: bool) -> None:
    """List licenses, most recently changed first."""
    records = _licenses(state).list(limit)
    if as_json:
        print_json([_json(r) for r in records])
        return
    if not records:
        console.print("No licenses yet.")
        return
    table = id_table("license", "tier", "status", "users", "expires", "e-mail")
    for r in records:
        expires = f"{r.expires_at:%Y-%m-%d}" if r.expires_at else "never"
        table.add_row(
            line(r.id),
            r.tier.value,
            r.status.value,
            str(r.entitlements.max_users),
            expires,
            line(r.email),
        )
    console.print(table)


@license_group.command("show")
@LICENSE_ID
@json_option
@pass_state
def show(state: State, license_id: str, as_json: bool) -> None:
    """Show one license."""
    record = _licenses(state).get(license_id)
    if as_json:
        print_json(_json(record))
    else:
        _show(record)


def _change(
    state: State, license_id: str, status: LicenseStatus, reason: str | None, as_json: bool
) -> None:
    record = _licenses(state).change(license_id, status, reason)
    if as_json:
        print_json(_json(record))
    else:
        _show(record)


@license_group.command("suspend")
@LICENSE_ID
@click.option("--reason", required=True, help="Why (shown to the license's users).")
@json_option
@pass_state
def suspend(state: State, license_id: str, reason: str, as_json: bool) -> None:
    """Suspend a license: its key is refused until it is reinstated."""
    _change(state, license_id, LicenseStatus.SUSPENDED, reason, as_json)


@license_group.command("reinstate")
@LICENSE_ID
@json_option
@pass_state
def reinstate(state: State, license_id: str, as_json: bool) -> None:
    """Reinstate a suspended or throttled license: active again, with its original limits."""
    record = _licenses(state).reinstate(license_id)
    if as_json:
        print_json(_json(record))
    else:
        _show(record)


@license_group.command("revoke")
@LICENSE_ID
@click.option("--reason", help="Why.")
@json_option
@pass_state
def revoke(state: State, license_id: str, reason: str | None, as_json: bool) -> None:
    """Revoke a license for good."""
    _change(state, license_id, LicenseStatus.REVOKED, reason, as_json)


@license_group.command("certificate")
@LICENSE_ID
@pass_state
def certificate(state: State, license_id: str) -> None:
    """Print a signed certificate of the license (verifiable offline; redirect to a file)."""
    from connectsw.licensing.secrets import signing_key

    click.echo(_licenses(state).certificate(license_id, signing_key(state.settings)))


@license_group.command("public-key")
@pass_state
def public_key(state: State) -> None:
    """Print the public key (PEM) that verifies this server's certificates."""
    from connectsw.licensing.certificates import public_key_pem
    from connectsw.licensing.secrets import signing_key

    click.echo(public_key_pem(signing_key(state.settings)).decode("ascii"), nl=False)


@license_group.command("verify")
@click.argument("certificate_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "public_key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The server's public key (from `connectsw license public-key`).",
)
@json_option
def verify(certificate_file: Path, public_key_file: Path, as_json: bool) -> None:
    """Check a certificate offline: signature and expiry (no server, no store)."""
    from connectsw.licensing.certificates import (
        certificate_dict,
        load_public_key,
        verify_certificate,
    )

    text = _read_small(certificate_file, "certificate")
    try:
        public = load_public_key(_read_small(public_key_file, "public key").encode("ascii"))
    except (ValueError, TypeError):
        raise ConfigError(f"{public_key_file}: not an Ed25519 public key (PEM)") from None
    cert = verify_certificate(text, public)
    if as_json:
        print_json(certificate_dict(cert))
        return
    expires = f"{cert.expires_at:%Y-%m-%d}" if cert.expires_at else "never"
    what = f" ({cert.tier.value}), expires {expires}"
    console.print(line(("Valid: ", "green"), cert.license_id, what))


def _read_small(path: Path, what: str, limit: int = 65_536) -> str:
    """A small ASCII text file given by the user, read as every user file is
    (core/textfiles.py: UTF-8, or a byte-order mark's); ConfigError naming it otherwise."""
    try:
        text = textfiles.read_text(path, limit)
    except textfiles.TextFileError as exc:
        raise ConfigError(f"{what} file {path}: {exc}") from None
    if not text.isascii():
        raise ConfigError(f"{what} file {path}: not a {what} (not ASCII text)")
    return text
