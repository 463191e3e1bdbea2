"""Each detector on small hand-made event sets: what it flags, and honest patterns it must not."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from usage_rows import DAY, event, every, make_db  # noqa: E402

from connectsw.conf.settings import AntipiracySettings
from connectsw.licensing.analytics.detectors import DETECTORS, Finding, render, scan

H = timedelta(hours=1)
M = timedelta(minutes=1)
PRO = [("L1", "PRO", 1, "active")]


def run(events: list[dict[str, Any]], licenses: Any = PRO, **config: Any) -> list[Finding]:
    con = make_db(events, licenses)
    return scan(con, DAY - 2 * H, DAY + 8 * 24 * H, AntipiracySettings(**config))


def by(findings: list[Finding], detector: str) -> list[Finding]:
    return [f for f in findings if f.detector == detector]


def one_person(
    day: datetime = DAY, license_id: str = "L1", user: str = "u1"
) -> list[dict[str, Any]]:
    """Home in the morning and evening, office by day, a phone whose carrier rotates
    addresses every few minutes, and CI runs from a cloud provider's rotating runners."""
    out = []
    for t in every(day + 7 * H, day + 9 * H, 10 * M):  # home
        out.append(event(t, license_id, "203.0.113.5", 64501, session="laptop", user=user))
    for t in every(day + 9 * H, day + 18 * H, 5 * M):  # office
        out.append(event(t, license_id, "192.0.2.20", 64502, session="laptop", user=user))
    for i, t in enumerate(every(day + 8 * H, day + 22 * H, 7 * M)):  # phone, new address each time
        ip = f"100.{64 + i % 50}.{i % 250}.{(7 * i) % 250 + 1}"
        out.append(event(t, license_id, ip, 64503, session="phone", user=user))
    for i, t in enumerate(every(day + 9 * H, day + 19 * H, 2 * M)):  # CI
        ip = f"20.{i % 200}.{(3 * i) % 250}.{i % 250 + 1}"
        ci = f"ci{i // 15}"
        out.append(event(t, license_id, ip, 64504, "US", ci, user, agent="connectsw-cli (ci)"))
    for t in every(day + 19 * H, day + 23 * H, 10 * M):  # home again
        out.append(event(t, license_id, "203.0.113.5", 64501, session="laptop2", user=user))
    return out


def test_one_person_on_home_office_phone_and_ci_is_not_flagged() -> None:
    events = [e for d in range(5) for e in one_person(DAY + d * 24 * H)]
    assert run(events) == []


def test_multi_ip_flags_a_pro_key_used_from_many_networks() -> None:
    events = [
        event(DAY + 10 * H + i * M, ip=f"198.51.{i}.9", asn=64600 + i, session=f"s{i}")
        for i in range(8)
    ]
    [finding] = by(run(events), "multi_ip")
    assert finding.evidence["places"] == 8
    assert finding.evidence["allowed"] == 4.5  # PRO 3 × 1 seat × grace 1.5
    assert finding.severity == "high" and 0.5 < finding.confidence < 1
    assert len(finding.evidence["top_places"]) == 8
    assert finding.window_start == DAY and finding.window_end == DAY + 24 * H


def test_multi_ip_reference_rule_without_grace() -> None:
    events = [event(DAY + 10 * H + i * M, ip=f"198.51.{i}.9", asn=64600 + i) for i in range(4)]
    assert by(run(events), "multi_ip") == []
    assert len(by(run(events, multi_ip_grace=1.0), "multi_ip")) == 1


def test_multi_ip_counts_a_mobile_carrier_as_one_place() -> None:
    events = [
        event(DAY + i * 3 * M, ip=f"100.{64 + i % 60}.{i % 200}.{i % 250 + 1}", asn=64503)
        for i in range(300)
    ]
    assert run(events) == []


def test_multi_ip_without_asn_counts_slash_24s() -> None:
    same_net = [event(DAY + i * M, ip=f"198.51.100.{i + 1}", asn=None) for i in range(40)]
    assert by(run(same_net), "multi_ip") == []
    many_nets = [event(DAY + i * M, ip=f"198.51.{i}.1", asn=None) for i in range(6)]
    assert by(run(many_nets), "multi_ip")[0].evidence["places"] == 6
    v6 = [event(DAY + i * M, ip=f"2001:db8:{i:x}::1", asn=None) for i in range(6)]
    assert by(run(v6), "multi_ip")[0].evidence["places"] == 6
    v6_same = [event(DAY + i * M, ip=f"2001:db8:1::{i:x}", asn=None) for i in range(60)]
    assert by(run(v6_same), "multi_ip") == []


def test_multi_ip_scales_with_the_tier_and_seats() -> None:
    events = [
        event(DAY + i * M, "B1", f"198.51.{i}.9", 64600 + i, tier="BUSINESS", user=f"u{i % 5}")
        for i in range(40)
    ]
    assert by(run(events, [("B1", "BUSINESS", 5, "active")]), "multi_ip") == []
    assert len(by(run(events, [("B1", "BUSINESS", 2, "active")]), "multi_ip")) == 1
    # A license missing from `licenses`: the event's tier, one seat.
    assert by(run(events, []), "multi_ip")[0].evidence["allowed"] == 15.0


def test_a_team_within_its_tier_is_not_flagged() -> None:
    events = []
    for member in range(10):
        for e in one_person(DAY, "B1", user=f"u{member}"):
            e["tier"] = "BUSINESS"
            e["session_id"] = f"{member}-{e['session_id']}"
            e["ip"] = e["ip"] if e["asn"] in (64503, 64504) else f"10.{member}.{e['asn'] % 100}.1"
            e["asn"] = (
                e["asn"] if e["asn"] in (64503, 64504) else 65000 + member * 10 + e["asn"] % 10
            )
            e["country"] = "US" if member % 2 else "DE"  # half the team abroad
            events.append(e)
    assert run(events, [("B1", "BUSINESS", 10, "active")]) == []


def test_concurrent_sessions_flags_a_key_passed_around_a_class() -> None:
    events = [
        event(t + s * 10 * timedelta(seconds=1), ip=f"192.0.2.{s + 1}", asn=64510, session=f"s{s}")
        for t in every(DAY + 10 * H, DAY + 12 * H, 4 * M)
        for s in range(12)
    ]
    [finding] = by(run(events), "concurrent_sessions")
    assert finding.evidence["peak_sessions"] == 12
    assert finding.evidence["allowed"] == 3.0  # 1 seat × 2 sessions × grace 1.5
    assert finding.evidence["buckets_over"] >= 20
    assert finding.severity == "high"  # 4× the allowance


def test_concurrent_sessions_ignores_one_short_overlap() -> None:
    events = [event(DAY + 10 * H + s * M, session=f"s{s}") for s in range(5)]
    assert by(run(events), "concurrent_sessions") == []


def test_round_the_clock_flags_every_hour_from_many_places() -> None:
    events = [event(t, ip="198.51.100.1", asn=64500) for t in every(DAY, DAY + 24 * H, 20 * M)]
    events += [event(DAY + 15 * H + i * M, ip=f"198.51.{i}.1", asn=64700 + i) for i in range(6)]
    [finding] = by(run(events), "round_the_clock")
    assert finding.evidence == {
        "active_hours": 24,
        "peak_places_in_an_hour": 7,
        "places_needed": 5,
        "requests": 78,
    }


def test_round_the_clock_spares_nightly_ci_with_one_person() -> None:
    events = one_person()
    events += [
        event(t, f"20.1.{i % 200}.1", asn=64504, country="US", session="nightly", agent="x (ci)")
        for i, t in enumerate(every(DAY, DAY + 24 * H, 30 * M))
        if not DAY + 9 * H <= t < DAY + 19 * H  # the nightly job runs outside CI's day
    ]
    con = make_db(events, PRO)
    hours = con.execute("SELECT COUNT(DISTINCT date_trunc('hour', ts)) FROM usage").fetchone()
    assert hours == (24,)
    assert run(events) == []


def test_burst_flags_scripted_bursts_repeatedly() -> None:
    step = timedelta(milliseconds=300)
    events = [
        event(DAY + h * H + i * step, session="bot")
        for h in range(0, 14, 2)  # 7 hours
        for i in range(400)
    ]
    [finding] = by(run(events), "burst")
    assert finding.evidence["burst_hours"] == 7
    assert finding.evidence["peak_requests_per_hour"] == 400
    assert finding.evidence["fastest_mean_interval_s"] == pytest.approx(0.3)
    assert by(run(events[: 5 * 400]), "burst") == []  # 5 hours: not more than 5


def test_burst_spares_a_busy_team_and_short_ci_jobs() -> None:
    # 60 people, each a request a minute: 3600/hour on the license, but no client bursts.
    team = [
        event(
            DAY + h * H + i * M + u * timedelta(seconds=1), "E1", session=f"u{u}", tier="ENTERPRISE"
        )
        for h in range(10)
        for i in range(60)
        for u in range(60)
    ]
    ci = [
        event(
            DAY + h * H + i * timedelta(milliseconds=200), "E1", session=f"ci{h}", tier="ENTERPRISE"
        )
        for h in range(10)
        for i in range(60)
    ]
    assert by(run(team + ci, [("E1", "ENTERPRISE", 100, "active")]), "burst") == []


def test_geographic_spread_flags_a_key_shared_with_a_friend_abroad() -> None:
    events = []
    for t in every(DAY + 14 * H, DAY + 18 * H, 10 * M):
        events.append(event(t, ip="203.0.113.5", asn=64501, country="DE"))
        events.append(event(t + 3 * M, ip="198.51.100.9", asn=64801, country="US"))
    [finding] = by(run(events), "geographic_spread")
    # each hour: DE then US at once (4); each new hour: US then DE 7 minutes later (3)
    assert finding.evidence["impossible_jumps"] == 7
    assert finding.evidence["user_id"] == "u1"
    assert {j["from"] for j in finding.evidence["jumps"]} == {"DE", "US"}
    assert finding.evidence["jumps"][0]["km"] > 7000


def test_geographic_spread_spares_travel_at_plane_speed_and_neighbours() -> None:
    events = [event(t, country="DE") for t in every(DAY + 6 * H, DAY + 9 * H, 10 * M)]
    # lands in the US 9 h later (7,900 km between the centroids; 900 km/h plus margin)
    events += [
        event(t, ip="198.51.100.9", asn=64801, country="US")
        for t in every(DAY + 16 * H, DAY + 20 * H, 10 * M)
    ]
    # a commuter across the French-German border, back and forth within minutes
    for t in every(DAY + 30 * H, DAY + 34 * H, 10 * M):
        events.append(event(t, ip="203.0.113.5", country="DE"))
        events.append(event(t + 2 * M, ip="192.0.2.9", asn=64900, country="FR"))
    assert by(run(events), "geographic_spread") == []


def test_geographic_spread_is_per_user() -> None:
    events = []
    for t in every(DAY + 14 * H, DAY + 18 * H, 10 * M):
        events.append(event(t, "B1", country="DE", user="anna", tier="BUSINESS"))
        events.append(
            event(t + 3 * M, "B1", "198.51.100.9", 64801, "US", user="bob", tier="BUSINESS")
        )
    assert run(events, [("B1", "BUSINESS", 10, "active")]) == []


def test_the_window_bounds_the_scan() -> None:
    events = [event(DAY + 10 * H + i * M, ip=f"198.51.{i}.9", asn=64600 + i) for i in range(8)]
    con = make_db(events, PRO)
    assert scan(con, DAY + 11 * H, DAY + 12 * H) == []


def test_every_detector_renders_one_select() -> None:
    for detector in DETECTORS:
        sql = render(detector, DAY, DAY + H, AntipiracySettings())
        assert sql.startswith("WITH ev AS") and ";" not in sql
    with pytest.raises(ValueError):
        render("burst", datetime(2026, 1, 1), DAY, AntipiracySettings())  # noqa: DTZ001
    assert DAY.tzinfo is UTC
