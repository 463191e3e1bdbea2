"""``connectsw outbox`` and ``license reinstate`` after the response tiers; SMTP delivery to
a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from connectsw.conf.settings import Settings
from connectsw.core.stores import Store, open_store
from connectsw.licensing.models import License
from connectsw.licensing.responses import ResponseAction, apply
from connectsw.licensing.secrets import license_secret
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import Tier

from .conftest import Cli

PASSWORD = "hunter2-never-shown"


class Recorder:
    """An SMTP server's handler: keeps what it accepted; refuses recipients ``refuse*@``."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.startswith("refuse"):
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        mail = message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(mail, EmailMessage)
        self.received.append(mail)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.store_url)
    yield store
    store.close()


@pytest.fixture
def licenses(store: Store, settings: Settings) -> Licenses:
    return Licenses(store, license_secret(settings), settings.licensing.tiers)


def respond(
    licenses: Licenses, store: Store, settings: Settings, record: License, tier: int, key: str
) -> None:
    action = ResponseAction(
        license_id=record.id,
        tier=tier,  # type: ignore[arg-type]
        detection_type="concurrent_sessions",
        confidence=0.7,
        evidence={"sessions": 5, "allowed": 2},
        finding_key=key,
    )
    assert apply(action, licenses=licenses, store=store, settings=settings).done


@pytest.fixture
def two_messages(licenses: Licenses, store: Store, settings: Settings) -> License:
    """Two warning e-mails in the outbox: to owner@ (delivered) and refuse@ (refused
    by the test server); the first one's license."""
    good, _ = licenses.issue(Tier.FREE, "owner@example.com")
    bad, _ = licenses.issue(Tier.PRO, "refuse@example.com")
    respond(licenses, store, settings, good, 1, "f-good")
    respond(licenses, store, settings, bad, 1, "f-bad")
    return good


def smtp_env(cli: Cli, port: int, **extra: str) -> None:
    cli.env.update(
        CONNECTSW_SMTP__HOST="127.0.0.1",
        CONNECTSW_SMTP__PORT=str(port),
        CONNECTSW_SMTP__SECURITY="none",
        CONNECTSW_SMTP__FROM_ADDR="ConnectSW <noreply@example.com>",
        CONNECTSW_SMTP__PASSWORD=PASSWORD,
        **extra,
    )


def test_send_delivers_and_a_refused_recipient_stays_unsent_with_its_error(
    cli: Cli, two_messages: License, smtp_server: tuple[Recorder, int]
) -> None:
    recorder, port = smtp_server
    good = two_messages
    listed = cli("outbox", "list", "--json", ok=True).json()
    assert [(m["to"], m["sent_at"]) for m in listed] == [
        ("owner@example.com", None),
        ("refuse@example.com", None),
    ]
    smtp_env(cli, port)
    out = cli("outbox", "send")
    assert out.returncode == 7
    assert out.error_line().startswith("Error: 1 of 2 message(s) not delivered (1 sent)")
    assert "sent " in out.stdout and "550" in out.stdout
    assert PASSWORD not in out.stdout + out.stderr
    (mail,) = recorder.received
    assert recorder.envelopes == [("noreply@example.com", ["owner@example.com"])]
    assert mail["To"] == "owner@example.com" and mail["From"] == "ConnectSW <noreply@example.com>"
    assert mail["Subject"] == "Upgrade your ConnectSW license?"
    body = mail.get_content()
    assert "multiple people might be using your account" in body
    assert f"license={good.id}&reason=concurrent_sessions&tier=PRO" in body
    (left,) = cli("outbox", "list", "--unsent", "--json", ok=True).json()
    assert left["to"] == "refuse@example.com" and left["attempts"] == 1
    assert left["last_error"].startswith("recipient refused: refuse@example.com: 550")
    assert "\n" not in left["last_error"]
    shown = cli("outbox", "show", str(left["id"]), ok=True).stdout
    assert "Last error: recipient refused" in shown and "Upgrade your ConnectSW" in shown
    # Again: the delivered message is not sent twice; the refused one is tried again.
    assert cli("outbox", "send").returncode == 7
    assert len(recorder.received) == 1
    assert cli("outbox", "show", str(left["id"]), "--json", ok=True).json()["attempts"] == 2
    sent = [m for m in cli("outbox", "list", "--json", ok=True).json() if m["sent_at"]]
    assert [(m["to"], m["attempts"]) for m in sent] == [("owner@example.com", 1)]


def test_a_failed_login_is_recorded_and_never_shows_the_password(
    cli: Cli,
    licenses: Licenses,
    store: Store,
    settings: Settings,
    smtp_server: tuple[Recorder, int],
) -> None:
    recorder, port = smtp_server
    record, _ = licenses.issue(Tier.FREE, "owner@example.com")
    respond(licenses, store, settings, record, 1, "f1")
    smtp_env(cli, port, CONNECTSW_SMTP__USERNAME="mailer")  # the server offers no AUTH
    out = cli("outbox", "send")
    assert out.returncode == 7 and out.error_line().startswith("Error: 1 of 1")
    assert "Traceback" not in out.stdout and PASSWORD not in out.stdout + out.stderr
    (left,) = cli("outbox", "list", "--unsent", "--json", ok=True).json()
    assert "AUTH" in left["last_error"] and PASSWORD not in json.dumps(left)
    assert recorder.received == []
    # No server at all: one line per message, no traceback.
    smtp_env(cli, free_port())
    out = cli("outbox", "send")
    assert out.returncode == 7 and "ConnectionRefusedError" in out.stdout


def test_nothing_to_send_and_unknown_messages(cli: Cli) -> None:
    assert cli("outbox", "send", ok=True).stdout.strip() == "No unsent messages."
    assert cli("outbox", "list", ok=True).stdout.strip() == "No messages."
    missing = cli("outbox", "show", "42")
    assert missing.returncode == 4 and missing.error_line() == "Error: no outbox message 42"


def test_license_reinstate_restores_the_limits_of_a_throttled_license(
    cli: Cli, licenses: Licenses, store: Store, settings: Settings, tmp_path: Path
) -> None:
    record, key = licenses.issue(Tier.PRO, "owner@example.com")
    respond(licenses, store, settings, record, 2, "w1")
    shown = cli("license", "show", record.id, "--json", ok=True).json()
    assert shown["entitlements"]["requests_per_hour"] == 500
    assert shown["throttle"]["original"]["requests_per_hour"] == 1000
    assert "500 requests per hour instead of 1000" in cli("license", "show", record.id).stdout
    back = cli("license", "reinstate", record.id, "--json", ok=True).json()
    assert back["status"] == "active" and back["throttle"] is None
    assert back["entitlements"] == record.entitlements.model_dump(mode="json")
    again = cli("license", "reinstate", record.id)
    assert again.returncode == 5
    assert again.error_line() == (
        f"Error: license {record.id} is active and not throttled: nothing to reinstate"
    )
    # Throttled, then suspended: one reinstate undoes both.
    respond(licenses, store, settings, record, 2, "w2")
    respond(licenses, store, settings, record, 3, "w3")
    assert cli("license", "show", record.id, "--json", ok=True).json()["status"] == "suspended"
    back = cli("license", "reinstate", record.id, "--json", ok=True).json()
    assert (back["status"], back["reason"], back["throttle"]) == ("active", None, None)
    assert back["entitlements"]["requests_per_hour"] == 1000
    # No output, message or event holds the key.
    tag = key.rsplit("-", 1)[1]
    outputs = [cli("outbox", "list", "--json", ok=True).stdout]
    outputs += [cli("outbox", "show", str(m.id), ok=True).stdout for m in store.outbox_messages()]
    outputs += [json.dumps(e.data) for e in store.security_events(record.id)]
    assert all(tag not in text for text in outputs)


def test_send_json_reports_each_delivery(
    cli: Cli, two_messages: License, smtp_server: tuple[Recorder, int]
) -> None:
    recorder, port = smtp_server
    del two_messages  # in the outbox
    smtp_env(cli, port)
    out = cli("outbox", "send", "--json")
    assert out.returncode == 7 and out.error_line().startswith("Error: 1 of 2 message(s)")
    report = json.loads(out.stdout)
    assert (report["sent"], report["failed"]) == (1, 1)
    first, second = report["deliveries"]
    assert (first["to"], first["error"]) == ("owner@example.com", None)
    assert second["to"] == "refuse@example.com" and "550" in second["error"]
    assert PASSWORD not in out.stdout + out.stderr and len(recorder.received) == 1
    assert cli("outbox", "send", "--json").json()["deliveries"][0]["to"] == "refuse@example.com"
