"""Shared fixtures: an isolated data dir and settings per test, one Dask cluster per session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from distributed import Client

from connectsw.conf.settings import Settings, get_settings, load_settings
from connectsw.core.engine import Engine
from connectsw.plugins.manager import reset_plugin_manager
from tests.pip_target import pip_install as install_into


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C is part of what is tested: a suite started in the background by a
    non-interactive shell (``cmd &``) inherits SIGINT ignored, and so would every
    command it starts, which then never sees a Ctrl-C. Take Python's default back."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pytest-xdist worker (scripts/test runs the suite on 2), the tests marked ``slow``
    come first, in their order: the workers take tests one at a time in collection
    order (``--dist loadgroup``), so the long ones start early and the many short ones
    fill the gaps, instead of one worker finishing a long test alone at the end. A run
    in one process keeps pytest's order. The last of the hooks: the sort is stable, so
    the order the others gave stays within the slow tests and within the others."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data dir and freshly read settings and plugins."""
    data = tmp_path / "data"
    monkeypatch.setenv("CONNECTSW_DATA_DIR", str(data))
    monkeypatch.delenv("CONNECTSW_CONFIG", raising=False)
    monkeypatch.delenv("CONNECTSW_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("CONNECTSW_TRACE_PLUGINS", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    reset_plugin_manager()
    yield data
    get_settings.cache_clear()
    reset_plugin_manager()


@pytest.fixture(scope="session")
def dask_client(connectsw_dask_client: Client) -> Client:
    """The engine tests' shared in-process cluster: the one ``connectsw.testing`` gives
    plugin authors (one cluster per session, configured as the engine's own)."""
    return connectsw_dask_client


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_stores`` run on the embedded store and on a real PostgreSQL."""
    marked = metafunc.definition.get_closest_marker("both_stores") is not None
    if marked and "store_backend" in metafunc.fixturenames:
        metafunc.parametrize("store_backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` unless the test is marked ``both_stores`` (then each in turn)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def settings(isolated: Path, store_backend: str, request: pytest.FixtureRequest) -> Settings:
    """Settings on the test's data dir, with fast retries and heartbeats."""
    settings = load_settings(
        engine={"retry_backoff": 0.01, "heartbeat_interval": 0.2, "lease_timeout": 5},
    )
    if store_backend == "sqlite":
        return settings
    url = request.getfixturevalue("postgres_url")
    return settings.model_copy(update={"store": settings.store.model_copy(update={"url": url})})


def _wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting")


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """``wait_for(predicate, timeout=20.0)``: poll every 0.05 s until true, else fail."""
    return _wait_for


@pytest.fixture
def engine(settings: Settings, dask_client: Client) -> Iterator[Engine]:
    """An engine on the test's store and the session's cluster."""
    eng = Engine(settings, client=dask_client)
    yield eng
    eng.store.close()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of the real PostgreSQL server that scripts/test (and so CI) starts for the suite."""
    url = os.environ.get("CONNECTSW_TEST_POSTGRES_URL", "")
    if not url:
        pytest.skip("no PostgreSQL server: run the suite with scripts/test, which starts one")
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A store URL on an empty schema of its own, dropped after the test."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    yield f"{postgres_server}?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_server, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


# -- plugin distributions ------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ConnectSW's settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def pip_install(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """``pip_install(source) -> site``: the distribution at ``source`` installed (once per
    session and source) into a target folder of its own, as ``pip install`` would.

    The source is copied first (builds write into it); the copy is ``site.parent / "src"``.
    """
    installed: dict[Path, Path] = {}

    def install(source: Path) -> Path:
        key = source.resolve()
        if key not in installed:
            work = tmp_path_factory.mktemp(f"pip-{source.name}")
            installed[key] = install_into([source], work)
        return installed[key]

    return install


@pytest.fixture
def run_plugin_tests(tmp_path: Path) -> Callable[[Path, Path], subprocess.CompletedProcess[str]]:
    """``run_plugin_tests(source, site)``: pytest on ``source/tests`` in a new process, with
    ``site`` (where the plugin is installed) on its path.

    The plugin's own tests find its entry point in ``site`` and ConnectSW's fixtures
    (``connectsw.testing``) through ConnectSW's ``pytest11`` entry point.
    """
    return lambda source, site: _run_plugin_tests(source, site, tmp_path)


def _run_plugin_tests(source: Path, site: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        PYTHONPATH=os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        PYTHONDONTWRITEBYTECODE="1",
        CONNECTSW_DATA_DIR=str(tmp_path / "plugin-tests-data"),
        # Dask's own tmp files (worker dirs) stay in the test's folder.
        TMPDIR=str(tmp_path),
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            str(source / "tests"),
        ],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def bare_scheduler() -> Iterator[str]:
    """A real ``dask scheduler`` process on loopback (allowed-failures 0), no worker."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
        + ["--port", str(port), "--no-dashboard"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the scheduler did not start"
                time.sleep(0.2)
        yield f"tcp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``tmpfs(name, options) -> folder``: a real tmpfs mounted on ``tmp_path / name``
    with mount ``options`` (``"ro,size=1m"``: a read-only disk, ``"size=4m"``: a disk that
    fills up), unmounted after the test. Skips where mounting is not allowed (not root)."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        target = tmp_path / name
        target.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=True)
