"""``connectsw outbox ...``: the e-mails queued by the anti-piracy response tiers."""

from __future__ import annotations

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from connectsw.cli.context import State, console, err_console, json_option, pass_state, print_json
from connectsw.cli.render import id_table, line
from connectsw.core.errors import ConnectSWError, ExitCode, NotFound
from connectsw.core.stores.outbox import OutboxMessage
from connectsw.licensing.mail import message_json


class DeliveryFailed(ConnectSWError):
    """Some messages could not be delivered (each keeps its error)."""

    exit_code = ExitCode.ERROR


def _state(m: OutboxMessage) -> str:
    if m.sent_at is not None:
        return f"sent {m.sent_at:%Y-%m-%d %H:%M}"
    return "failed" if m.last_error else "queued"


@click.group("outbox")
def outbox_group() -> None:
    """E-mails queued by the anti-piracy responses: list, show, send over SMTP."""


@outbox_group.command("list")
@click.option("--unsent", is_flag=True, help="Only messages not sent yet.")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Messages listed (1 to 10000), oldest first.",
)
@json_option
@pass_state
def list_messages(state: State, unsent: bool, limit: int, as_json: bool) -> None:
    """List queued e-mails, oldest first."""
    messages = state.store.outbox_messages(unsent=unsent, limit=limit)
    if as_json:
        print_json([message_json(m) for m in messages])
        return
    if not messages:
        console.print("No messages." if not unsent else "No unsent messages.")
        return
    table = id_table("id", "created", "license", "to", "subject", "state", "attempts")
    for m in messages:
        table.add_row(
            str(m.id),
            f"{m.created_at:%Y-%m-%d %H:%M}",
            line(m.license_id),
            line(m.to_addr),
            line(m.subject),
            _state(m),
            str(m.attempts),
        )
    console.print(table)


@outbox_group.command("show")
@click.argument("message_id", type=click.IntRange(1))
@json_option
@pass_state
def show(state: State, message_id: int, as_json: bool) -> None:
    """Show one message: headers, state and body."""
    m = state.store.outbox_message(message_id)
    if m is None:
        raise NotFound(f"no outbox message {message_id}")
    if as_json:
        print_json(message_json(m))
        return
    console.print(
        line(("Message ", ""), (str(m.id), "bold"), f": {_state(m)}, ", f"{m.attempts} attempt(s)")
    )
    console.print(line("License: ", m.license_id))
    console.print(line("To: ", m.to_addr))
    console.print(line("Subject: ", m.subject))
    if m.last_error:
        console.print(line(("Last error: ", "red"), m.last_error))
    console.print()
    console.print(line(m.body))


@outbox_group.command("send")
@click.option(
    "--limit",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Messages sent at most in this run, oldest first.",
)
@json_option
@pass_state
def send(state: State, limit: int, as_json: bool) -> None:
    """Deliver the unsent messages over SMTP (settings in [smtp]); exit 7 if any failed."""
    from connectsw.licensing.mail import Delivery, deliveries_json, send_unsent

    store, conf = state.store, state.settings.smtp
    if as_json:
        done = deliveries_json(send_unsent(store, conf, limit=limit))
        print_json(done)
        if done["failed"]:
            raise DeliveryFailed(
                f"{done['failed']} of {len(done['deliveries'])} message(s) not delivered"
                f" ({done['sent']} sent)"
            )
        return
    total = len(store.outbox_messages(unsent=True, limit=limit))
    if total == 0:
        console.print("No unsent messages.")
        return
    failed: list[Delivery] = []
    with Progress(
        TextColumn("[bold]Sending"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as progress:
        task = progress.add_task("send", total=total)

        def report(d: Delivery) -> None:
            progress.advance(task)
            if d.error is None:
                console.print(
                    line(("sent ", "green"), f"{d.message.id} ", d.message.to_addr), soft_wrap=True
                )
            else:
                failed.append(d)
                console.print(
                    line(("failed ", "red"), f"{d.message.id} ", d.message.to_addr, ": ", d.error),
                    soft_wrap=True,
                )

        results = send_unsent(store, conf, limit=limit, on_delivery=report)
    sent = len(results) - len(failed)
    if failed:
        raise DeliveryFailed(
            f"{len(failed)} of {len(results)} message(s) not delivered ({sent} sent);"
            " see `connectsw outbox list --unsent`"
        )
    console.print(f"{sent} message(s) sent.")
