"""Usage events on a file system that is not the local one (fsspec's in-memory store, as
object storage would be): import, re-import, a second import into a stored date
(deduplication and compaction read the stored files), the rollup and a scan."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import event, write_csv  # noqa: E402

from connectsw.conf.settings import Settings
from connectsw.licensing.analytics.detectors import data_range, scan
from connectsw.licensing.analytics.ingest import import_events
from connectsw.licensing.analytics.rollup import ROLLUP_DIR
from connectsw.licensing.analytics.views import scan_connection


@pytest.fixture
def remote(settings: Settings) -> Iterator[Settings]:
    root = f"/bucket-{uuid.uuid4().hex[:8]}/usage"
    yield settings.model_copy(
        update={
            "analytics": settings.analytics.model_copy(update={"usage_url": f"memory://{root}"})
        }
    )
    fsspec.filesystem("memory").rm(root.rsplit("/", 1)[0], recursive=True)


def _events(n: int, minute: int = 0) -> list[dict[str, object]]:
    return [
        event(
            ts=f"2026-05-01T10:{minute + i:02d}:00Z",
            ip=f"198.51.{i}.9",
            asn=64600 + i,
            session_id=f"s{i}",
        )
        for i in range(n)
    ]


def test_import_rollup_and_scan_on_a_remote_file_system(remote: Settings, tmp_path: Path) -> None:
    first = write_csv(tmp_path / "a.csv", _events(12))
    assert import_events(remote, [first]).imported == 12
    again = import_events(remote, [first])
    assert (again.imported, again.duplicates) == (0, 12)
    more = import_events(remote, [write_csv(tmp_path / "b.csv", _events(10, minute=30))])
    assert more.imported == 10 and more.files_compacted == 2

    root = remote.analytics.usage_url.removeprefix("memory://")
    files = fsspec.filesystem("memory").find(root)
    assert [f for f in files if f"/{ROLLUP_DIR}/" in f]  # the rollup is there too
    assert not Path(remote.data_dir, "usage").exists()  # nothing on the local disk

    con, view = scan_connection(remote)
    assert view is not None
    assert con.execute("SELECT count(*) FROM usage").fetchone() == (22,)
    assert con.execute(f"SELECT sum(n) FROM {view}").fetchone() == (22,)
    since, until = data_range(con)  # type: ignore[misc]
    found = scan(con, since, until, remote.antipiracy, rollup=view)
    assert {f.detector for f in found} == {"multi_ip", "concurrent_sessions"}  # 22 of each
    assert found == scan(con, since, until, remote.antipiracy)
