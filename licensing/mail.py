"""Deliver the outbox over SMTP (``connectsw outbox send``; settings in ``[smtp]``).

The standard library's ``smtplib`` and ``email.message.EmailMessage``: one
connection for the batch (implicit TLS, STARTTLS or plain, then a login if a
user name is set). A message is marked sent only after the server accepted it;
a refusal or an error is recorded on that message (one more attempt, the error
in one line) and the batch goes on, reconnecting if the connection was lost.
The password (``CONNECTSW_SMTP__PASSWORD`` or ``smtp.password_file``) is never
printed: it is masked in every error text.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from connectsw.conf.settings import SmtpSettings
from connectsw.core import textfiles
from connectsw.core.errors import ConfigError
from connectsw.core.models import utcnow
from connectsw.core.stores import Store
from connectsw.core.stores.outbox import MAX_ERROR, OutboxMessage

#: The longest password file read.
MAX_PASSWORD_BYTES = 4096


@dataclass(frozen=True)
class Delivery:
    """One message's attempt: ``error`` None if the server accepted it."""

    message: OutboxMessage
    error: str | None


def smtp_password(conf: SmtpSettings) -> str | None:
    """The password from the environment (``smtp.password``) or ``password_file``'s first
    line (read as every user file is: core/textfiles.py); None if neither is set.
    ConfigError (not quoting it) if the file is unreadable, too large or not text."""
    if conf.password is not None and conf.password.get_secret_value():
        return conf.password.get_secret_value()
    if conf.password_file is None:
        return None
    path = conf.password_file.expanduser()
    try:  # as every user file (UTF-8 or a byte-order mark's); a bad byte is not quoted
        text = textfiles.read_text(path, MAX_PASSWORD_BYTES, show_bytes=False)
    except textfiles.TextFileError as exc:
        raise ConfigError(f"smtp.password_file {path}: {exc}") from None
    lines = text.splitlines()
    return lines[0].strip() if lines else None


def email_message(message: OutboxMessage, sender: str) -> EmailMessage:
    """The outbox message as an RFC 5322 e-mail (plain text, UTF-8)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to_addr
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(message.created_at)
    mail["Message-ID"] = make_msgid(f"outbox{message.id}")
    mail.set_content(message.body)
    return mail


class _Masked:
    def __init__(self, secret: str | None) -> None:
        self.secret = secret

    def __call__(self, text: str) -> str:
        from connectsw.core.redact import mask_secret

        text = mask_secret(text, self.secret)
        return " ".join(text.split())[:MAX_ERROR] or "failed"


def describe_error(exc: BaseException) -> str:
    """An SMTP or network error as one line (the server's code and text if it gave one)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        parts = [
            f"{addr}: {code} {reply.decode('utf-8', 'replace')}"
            for addr, (code, reply) in exc.recipients.items()
        ]
        return "recipient refused: " + "; ".join(parts)
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error
        reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return f"{type(exc).__name__}: {exc.smtp_code} {reply}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


class Mailer:
    """An SMTP connection made as ``conf`` says (opened on first use)."""

    def __init__(self, conf: SmtpSettings) -> None:
        self.conf = conf
        self.password = smtp_password(conf)
        self.mask = _Masked(self.password)
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        c = self.conf
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if c.security == "ssl":
            smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=context)
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        try:
            if c.security == "starttls":
                smtp.starttls(context=context)
            if c.username:
                smtp.login(c.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: OutboxMessage) -> None:
        """Send one message; raises on refusal or error (the connection is dropped if
        it may be unusable)."""
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.send_message(email_message(message, self.conf.from_addr))
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError):
            raise  # the session is reset by smtplib: still usable
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


def send_unsent(
    store: Store,
    conf: SmtpSettings,
    *,
    limit: int = 1000,
    on_delivery: Callable[[Delivery], None] = lambda d: None,
) -> list[Delivery]:
    """Deliver the unsent messages (oldest first, at most ``limit``); each is marked sent
    once the server accepted it, or its failure is recorded. Returns what happened.

    At least once: a message accepted by the server whose mark is then lost (the
    store failing right after) is sent again by the next run."""
    mailer = Mailer(conf)
    results = []
    try:
        for message in store.outbox_messages(unsent=True, limit=limit):
            error: str | None = None
            try:
                mailer.send(message)
            except (smtplib.SMTPException, OSError, ValueError) as exc:
                error = mailer.mask(describe_error(exc))
                store.mark_failed(message.id, error)
            else:
                store.mark_sent(message.id, utcnow())
            result = Delivery(message, error)
            results.append(result)
            on_delivery(result)
    finally:
        mailer.close()
    return results


def message_json(m: OutboxMessage) -> dict[str, Any]:
    """One outbox message as ``outbox list|show --json`` and ``/v1/admin/outbox`` give it
    (times ISO 8601, ``sent_at`` null until the server accepted it)."""
    return {
        "id": m.id,
        "created_at": m.created_at.isoformat(),
        "license_id": m.license_id,
        "to": m.to_addr,
        "subject": m.subject,
        "body": m.body,
        "sent_at": m.sent_at.isoformat() if m.sent_at else None,
        "attempts": m.attempts,
        "last_error": m.last_error,
    }


def deliveries_json(results: list[Delivery]) -> dict[str, Any]:
    """A :func:`send_unsent` run as ``outbox send --json`` and ``POST /v1/admin/outbox/send``
    give it: ``{"sent": N, "failed": N, "deliveries": [{"id", "to", "error"}]}`` (``error``
    null for a message the server accepted; the password is masked in it)."""
    failed = sum(1 for d in results if d.error is not None)
    return {
        "sent": len(results) - failed,
        "failed": failed,
        "deliveries": [
            {"id": d.message.id, "to": d.message.to_addr, "error": d.error} for d in results
        ],
    }
