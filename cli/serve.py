"""``connectsw serve``: the API server (aiohttp) on one address until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import click

from connectsw.cli.context import State, pass_state


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8787,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0: any free port; the one chosen is printed).",
)
@pass_state
def serve(state: State, host: str, port: int) -> None:
    """Run the API server; prints the address it listens on, stops on Ctrl-C or SIGTERM."""
    asyncio.run(_serve(state, host, port))


async def _serve(state: State, host: str, port: int) -> None:
    from aiohttp import web

    from connectsw.web.app import make_app

    runner = web.AppRunner(make_app(state.settings), access_log=None)
    await runner.setup()  # opens the store, reads the secrets: refuses to start without
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            from connectsw.core.errors import ConfigError

            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        for address in runner.addresses:
            click.echo(f"Serving on http://{address[0]}:{address[1]}", err=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
