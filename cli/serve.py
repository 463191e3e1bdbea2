"""``connectsw serve``: the API server (aiohttp) on one address until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import ssl
from pathlib import Path

import click

from connectsw.cli.context import State, pass_state
from connectsw.core.errors import ConfigError

#: Longest request line or header the server parses, bytes.
MAX_LINE = 65536


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8787,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0: any free port; the one chosen is printed).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Certificate chain (PEM): serve HTTPS, TLS 1.3 only.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The certificate's private key (PEM).",
)
@pass_state
def serve(state: State, host: str, port: int, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Run the API server; prints the address it listens on, stops on Ctrl-C or SIGTERM."""
    context = tls_context(tls_cert, tls_key) if tls_cert or tls_key else None
    asyncio.run(_serve(state, host, port, context))


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """A server context that accepts TLS 1.3 only (DESIGN.md); ConfigError if unusable."""
    if cert is None or key is None:
        raise ConfigError("--tls-cert and --tls-key go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: {exc.filename}: not found") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS: cannot use {cert} with {key}: {exc.strerror or exc}") from None
    return context


async def _serve(state: State, host: str, port: int, context: ssl.SSLContext | None = None) -> None:
    from aiohttp import web

    from connectsw.web.app import make_app

    # Request lines and headers up to 64 KiB reach the app, which answers in its JSON
    # error shape; aiohttp's own limit (8 KiB) answered plain text before any of it
    # ran (found by the property-based run: a long, non-ASCII query string).
    runner = web.AppRunner(
        make_app(state.settings),
        access_log=None,
        max_line_size=MAX_LINE,
        max_field_size=MAX_LINE,
    )
    await runner.setup()  # opens the store, reads the secrets: refuses to start without
    try:
        site = web.TCPSite(runner, host, port, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        for address in runner.addresses:
            scheme = "https" if context is not None else "http"
            click.echo(f"Serving on {scheme}://{address[0]}:{address[1]}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
