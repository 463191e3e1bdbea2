"""The tier table in the settings: every tier present, bounds checked, partly overridable."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectsw.conf.settings import load_settings
from connectsw.core.errors import ConfigError
from connectsw.licensing.tiers import Tier


def write_config(text: str) -> None:
    (Path.cwd() / "connectsw.toml").write_text(text, encoding="utf-8")


def test_every_tier_has_entitlements_by_default() -> None:
    tiers = load_settings().licensing.tiers
    assert set(tiers) == set(Tier)
    # Reference §3.2's multi-IP thresholds per tier.
    assert [tiers[t].ip_threshold for t in Tier] == [2, 3, 10, 50]
    assert tiers[Tier.BUSINESS].max_projects is None  # no limit
    assert [tiers[t].requests_per_hour for t in Tier] == sorted(
        tiers[t].requests_per_hour for t in Tier
    )


def test_a_user_file_changes_one_value_and_keeps_the_rest() -> None:
    write_config("[licensing.tiers.PRO]\nrequests_per_hour = 5\n")
    tiers = load_settings().licensing.tiers
    assert tiers[Tier.PRO].requests_per_hour == 5
    assert tiers[Tier.PRO].max_projects == 10
    assert tiers[Tier.FREE].requests_per_hour == 100


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[licensing.tiers.PRO]\nmax_users = 0\n", "licensing.tiers.PRO.max_users"),
        ("[licensing.tiers.GOLD]\nmax_users = 1\n", "licensing.tiers"),
        ("[licensing.tiers.PRO]\nseats = 1\n", "licensing.tiers.PRO.seats"),
    ],
)
def test_invalid_tier_settings_are_one_line_naming_the_setting(text: str, where: str) -> None:
    write_config(text)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert where in str(err.value)
    assert "\n" not in str(err.value)


def test_a_tier_value_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTSW_LICENSING__TIERS__FREE__REQUESTS_PER_HOUR", "5")
    tiers = load_settings().licensing.tiers
    assert tiers[Tier.FREE].requests_per_hour == 5
    assert tiers[Tier.FREE].max_users == 1  # the rest of the tier is kept


def test_the_multi_ip_detector_reads_the_tiers_ip_threshold() -> None:
    """One rule: the gateway's per-request flag and the detector read the same table."""
    settings = load_settings(licensing={"tiers": {"PRO": {"ip_threshold": 7}}})
    assert settings.licensing.tiers[Tier.PRO].ip_threshold == 7
    assert settings.antipiracy.multi_ip_thresholds[Tier.PRO] == 7
    assert settings.antipiracy.multi_ip_thresholds[Tier.FREE] == 2
    with pytest.raises(ConfigError, match="multi_ip_thresholds"):
        load_settings(antipiracy={"multi_ip_thresholds": {"PRO": 7}})


@pytest.mark.parametrize("seconds", [90, 1000, 2400])
def test_session_buckets_are_whole_minutes_dividing_an_hour(seconds: int) -> None:
    with pytest.raises(ConfigError, match="whole minutes that divide an hour"):
        load_settings(antipiracy={"session_bucket_seconds": seconds})


def test_a_session_bucket_of_ten_minutes_is_taken() -> None:
    assert (
        load_settings(antipiracy={"session_bucket_seconds": 600}).antipiracy.session_bucket_seconds
        == 600
    )
