"""The views: columns as documented, values on hand-made events, licenses local + imported."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectsw.conf.settings import Settings
from connectsw.core.stores import get_store
from connectsw.licensing.analytics.ingest import import_events, import_licenses
from connectsw.licensing.analytics.views import VIEWS, connect
from connectsw.licensing.secrets import license_secret
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import Tier

from .conftest import event, write_csv

L = "CSFW-PRO-AAAA"


@pytest.fixture
def events(settings: Settings, tmp_path: Path) -> None:
    rows = [
        event(ts="2026-05-01T10:05:00Z", ip="192.0.2.1", session_id="s1", user_id="u1"),
        event(ts="2026-05-01T10:30:00Z", ip="192.0.2.2", session_id="s2", user_id="u2", status=500),
        event(ts="2026-05-01T11:00:00Z", ip="192.0.2.1", session_id="s1", user_id="u1"),
        event(ts="2026-04-29T09:00:00Z", ip="198.51.100.9", session_id="s0"),  # outside 24 h
        event(
            ts="2026-05-01T09:00:00Z",
            license_id="CSFW-FREE-BBBB",
            tier="FREE",
            ip="203.0.113.5",
            session_id=None,
        ),
    ]
    import_events(settings, [write_csv(tmp_path / "e.csv", rows)])


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.name)
def test_columns_are_the_documented_ones(settings: Settings, view) -> None:
    con = connect(settings)  # no events yet: the views exist, empty
    described = con.execute(f"DESCRIBE {view.name}").fetchall()
    assert [(r[0], r[1]) for r in described] == [(n, t) for n, t, _ in view.columns]
    con.close()


def test_usage_and_hourly_values(settings: Settings, events: None) -> None:
    con = connect(settings)
    assert con.execute("SELECT count(*), count(DISTINCT date) FROM usage").fetchone() == (5, 2)
    hourly = con.execute(
        "SELECT strftime(hour, '%d %H'), requests, errors, ips, sessions FROM usage_hourly"
        " WHERE license_id = ? ORDER BY hour",
        [L],
    ).fetchall()
    assert hourly == [("29 09", 1, 0, 1, 1), ("01 10", 2, 1, 2, 2), ("01 11", 1, 0, 1, 1)]
    con.close()


def test_license_ips_24h(settings: Settings, events: None) -> None:
    con = connect(settings)
    rows = dict(
        (r[0], r[1:])
        for r in con.execute(
            "SELECT license_id, ips, requests, ip_list FROM license_ips_24h"
        ).fetchall()
    )
    assert rows[L] == (2, 3, ["192.0.2.1", "192.0.2.2"])
    assert rows["CSFW-FREE-BBBB"] == (1, 1, ["203.0.113.5"])
    con.close()


def test_sessions_concurrent_with_seats(settings: Settings, events: None, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "l.csv",
        [{"license_id": L, "tier": "PRO", "max_users": 3, "status": "active"}],
        ["license_id", "tier", "max_users", "status"],
    )
    import_licenses(settings, path)
    con = connect(settings)
    rows = con.execute(
        "SELECT strftime(hour, '%d %H'), sessions, users, max_users FROM sessions_concurrent"
        " WHERE license_id = ? ORDER BY hour",
        [L],
    ).fetchall()
    assert rows == [("29 09", 1, 1, 3), ("01 10", 2, 2, 3), ("01 11", 1, 1, 3)]
    con.close()


def test_licenses_local_win_over_imported(settings: Settings, tmp_path: Path) -> None:
    service = Licenses(
        get_store(settings.store_url), license_secret(settings), settings.licensing.tiers
    )
    local, _key = service.issue(Tier.BUSINESS, "a@example.com", users=7)
    path = write_csv(
        tmp_path / "l.csv",
        [
            {"license_id": local.id, "tier": "FREE", "max_users": 1, "status": "revoked"},
            {"license_id": "CSFW-PRO-ELSEWHERE", "tier": "PRO", "max_users": 2, "status": "active"},
        ],
        ["license_id", "tier", "max_users", "status"],
    )
    import_licenses(settings, path)
    con = connect(settings)
    rows = con.execute("SELECT * FROM licenses ORDER BY source").fetchall()
    assert rows == [
        ("CSFW-PRO-ELSEWHERE", "PRO", 2, "active", "imported"),
        (local.id, "BUSINESS", 7, "active", "local"),
    ]
    con.close()
