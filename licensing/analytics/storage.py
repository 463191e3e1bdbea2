"""Where usage events and imported licenses live: an fsspec file system and a root.

The root is ``analytics.usage_url`` (any fsspec URL) or, by default,
``DATA_DIR/usage``; events are ``ROOT/date=YYYY-MM-DD/*.parquet``
(:mod:`connectsw.licensing.usage`). Licenses imported with
``analytics import --licenses`` are ``DATA_DIR/analytics/licenses.parquet``.

Files appear atomically: each is written under a name no ``*.parquet`` glob
matches (``.NAME.tmp``) and then moved into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectsw.core.errors import ConfigError
from connectsw.licensing.usage import USAGE_DIR

if TYPE_CHECKING:
    from connectsw.conf.settings import Settings

PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
LICENSES_FILE = Path("analytics") / "licenses.parquet"


@dataclass(frozen=True)
class Storage:
    """The usage events' file system (fsspec) and root path on it."""

    fs: Any
    root: str

    @property
    def protocols(self) -> tuple[str, ...]:
        protocol = self.fs.protocol
        return tuple(protocol) if isinstance(protocol, tuple | list) else (protocol,)

    @property
    def local(self) -> bool:
        """True for the local file system (DuckDB then reads and writes the files itself)."""
        return "file" in self.protocols

    def register(self, con: Any) -> None:
        """Let the DuckDB connection ``con`` read and write this file system (once: DuckDB
        refuses a second registration; the local file system is DuckDB's own)."""
        if self.local:
            return
        names = (
            self.fs.protocol if isinstance(self.fs.protocol, tuple | list) else (self.fs.protocol,)
        )
        if not set(names) & set(con.list_filesystems()):
            con.register_filesystem(self.fs)

    def url(self, path: str) -> str:
        """``path`` as DuckDB opens it: as is on the local file system, else with its protocol."""
        return path if self.local else self.fs.unstrip_protocol(path)

    def partition(self, date: str) -> str:
        return f"{self.root}/date={date}"

    def glob(self) -> str:
        """The pattern DuckDB reads: every event file of every date."""
        return f"{self.root}/date=*/*.parquet"

    def dates(self) -> list[str]:
        """The dates that have a partition directory, sorted."""
        if not self.fs.exists(self.root):
            return []
        names = (p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))
        return sorted(m.group(1) for n in names if (m := PARTITION.match(n)))

    def files(self, date: str) -> dict[str, int]:
        """A partition's Parquet files (full paths) and their sizes in bytes."""
        where = self.partition(date)
        if not self.fs.exists(where):
            return {}
        return {
            info["name"]: int(info.get("size") or 0)
            for info in self.fs.ls(where, detail=True)
            if info["name"].endswith(".parquet") and not _hidden(info["name"])
        }

    def all_files(self) -> list[str]:
        return sorted(f for d in self.dates() for f in self.files(d))

    def put(self, local_file: Path, target: str) -> None:
        """Move a finished local file to ``target`` atomically (temp name, then rename)."""
        parent = target.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self.local:
            os.replace(local_file, target)  # same file system: the staging dir is under the root
            _fsync_dir(parent)
            return
        name = target.rsplit("/", 1)[-1]
        tmp = f"{parent}/.{name}.tmp"
        self.fs.put_file(str(local_file), tmp)
        self.fs.mv(tmp, target)
        local_file.unlink(missing_ok=True)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One import at a time on this root (a local lock file; on object storage, none)."""
        if not self.local:
            yield
            return
        self.fs.makedirs(self.root, exist_ok=True)
        with open(f"{self.root}/.import.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def staging(self) -> Path:
        """A private local directory for files being written (under the root when local,
        so that moving them in is a rename)."""
        import tempfile

        if self.local:
            self.fs.makedirs(self.root, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        return Path(tempfile.mkdtemp(prefix="connectsw-staging-"))


def _hidden(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(".")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def usage_storage(settings: Settings) -> Storage:
    """The usage events' storage from the settings."""
    import fsspec

    url = settings.analytics.usage_url or str(settings.data_dir.expanduser() / USAGE_DIR)
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ConfigError(_not_usable(url, exc)) from None
    return Storage(fs, str(root).rstrip("/") or "/")


def _not_usable(url: str, exc: Exception) -> str:
    """Why fsspec cannot open ``analytics.usage_url``, in one line naming the package a
    scheme needs (``s3://``: s3fs), never the URL itself (it may hold a key).

    fsspec raises ImportError for a known scheme whose package is missing ("Install
    s3fs to access S3") and ValueError for an unknown one; both were exit 70 (trial
    8b, F9).
    """
    import importlib.util

    from fsspec.registry import known_implementations

    # A chained URL (``simplecache::s3://...``) names several file systems.
    schemes = [part.split("://", 1)[0] for part in url.split("::") if "://" in part]
    if isinstance(exc, ImportError):
        for scheme in schemes:
            known = known_implementations.get(scheme, {})
            package = str(known.get("class", "")).split(".", 1)[0]
            if package and importlib.util.find_spec(package) is None:
                return (
                    f"analytics.usage_url: the {scheme}:// file system needs the Python package"
                    f" {package}, which is not installed (pip install {package})"
                )
        return f"analytics.usage_url: a file system it names cannot be loaded: {exc}"
    unknown = [s for s in schemes if s not in known_implementations]
    if unknown:
        return f"analytics.usage_url: unknown file system '{unknown[0]}://'"
    return f"analytics.usage_url: fsspec cannot open it: {exc}"


def local_storage(root: Path) -> Storage:
    """Usage events in a local directory (e.g. ``simulate traffic``'s ``OUT/usage``)."""
    import fsspec

    return Storage(fsspec.filesystem("file"), str(root.resolve()))


def licenses_file(settings: Settings) -> Path:
    """Where ``analytics import --licenses`` keeps the licenses it loaded."""
    return settings.data_dir.expanduser() / LICENSES_FILE
