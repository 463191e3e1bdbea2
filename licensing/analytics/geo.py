"""Geography of client addresses: country and ASN of an IP, distance between countries.

Sources (README, "Usage analytics (analysts)"):

* **country**: the ``geoip2fast`` package (MIT) ships its own data file derived from
  MaxMind's GeoLite2 Country CSV (``MAXMIND:GeoLite2-CountryASN-IPv4IPv6-en-20240618`` in
  version 1.2.2, IPv4 and IPv6). GeoLite2 data is MaxMind's, under the GeoLite2 End User
  License Agreement: "This product includes GeoLite2 data created by MaxMind, available
  from https://www.maxmind.com". A newer MaxMind database (GeoLite2-Country or -City
  ``.mmdb``) is used instead when ``analytics.geo_country_db`` names it (needs the
  ``maxminddb`` package: ``pip install 'connectsw[geo]'``).
* **asn**: geoip2fast's ASN data keeps the AS *name* (e.g. ``GOOGLE``), not its number, and
  no PyPI package ships IP→AS-number data (``pyasn`` and ``ip2asn`` ship readers only). So
  ``asn`` is filled from a MaxMind GeoLite2-ASN ``.mmdb`` named by
  ``analytics.geo_asn_db``; without one it keeps what the import gave (or NULL).
* **distances**: each country's approximate centroid (``latlng``) and region from the
  ``countryinfo`` package (MIT; data sourced from Wikipedia); great-circle distance
  between centroids (haversine, mean Earth radius 6371.0088 km).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from connectsw.core.errors import ConfigError

EARTH_RADIUS_KM = 6371.0088
GEOIP2FAST_FILE = "geoip2fast-ipv6.dat.gz"
"""geoip2fast's country data for IPv4 and IPv6 (its smallest file that has both)."""


@dataclass(frozen=True)
class Place:
    """Where an address is: ISO 3166 alpha-2 country and AS number, each None if unknown."""

    country: str | None
    asn: int | None


class Geo:
    """Country and ASN lookups, from geoip2fast's data or MaxMind databases."""

    def __init__(self, country_db: str = "", asn_db: str = "") -> None:
        self._country_reader = _mmdb(country_db, "analytics.geo_country_db") if country_db else None
        self._asn_reader = _mmdb(asn_db, "analytics.geo_asn_db") if asn_db else None
        self.country_source = country_db or f"geoip2fast ({_geoip2fast_source()})"
        self.asn_source = asn_db or None

    def lookup(self, ip: str) -> Place:
        """The place of one address; an address that is not one, or private, is nowhere.

        (geoip2fast answers ``--`` for private and unknown networks; ``ipaddress``'s
        ``is_global`` would cost several times the lookup itself.)
        """
        return Place(self._country(ip), self._asn(ip))

    def lookup_many(self, ips: Iterable[str]) -> dict[str, Place]:
        return {ip: self.lookup(ip) for ip in ips}

    def _country(self, ip: str) -> str | None:
        if self._country_reader is not None:
            record = self._country_reader.get(ip) or {}
            code = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
        else:
            code = _geoip2fast().lookup(ip).country_code
        return code if isinstance(code, str) and len(code) == 2 and code.isalpha() else None

    def _asn(self, ip: str) -> int | None:
        if self._asn_reader is None:
            return None
        record = self._asn_reader.get(ip) or {}
        number = record.get("autonomous_system_number")
        return int(number) if isinstance(number, int) else None


def _mmdb(path: str, setting: str) -> Any:
    try:
        import maxminddb
    except ImportError:
        raise ConfigError(
            f"{setting} needs the maxminddb package (pip install 'connectsw[geo]')"
        ) from None
    if not Path(path).expanduser().is_file():
        raise ConfigError(f"{setting}: no such file {path}")
    try:
        return maxminddb.open_database(str(Path(path).expanduser()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{setting}: not a MaxMind database ({exc})") from None


@lru_cache(maxsize=1)
def _geoip2fast() -> Any:
    """geoip2fast keeps its data in module globals: one reader per process."""
    from geoip2fast import GeoIP2Fast

    return GeoIP2Fast(verbose=False, geoip2fast_data_file=GEOIP2FAST_FILE)


def _geoip2fast_source() -> str:
    info = _geoip2fast().get_database_info()
    return str(info.get("source_info", "unknown"))


@lru_cache(maxsize=4)
def geo_for(country_db: str = "", asn_db: str = "") -> Geo:
    return Geo(country_db, asn_db)


# -- countries: centroids, regions, distances ------------------------------------------------


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    lat: float
    lon: float
    region: str
    subregion: str


@lru_cache(maxsize=1)
def countries() -> dict[str, Country]:
    """ISO alpha-2 → approximate centroid and region (``countryinfo``'s data)."""
    from countryinfo import all_countries

    table: dict[str, Country] = {}
    for info in all_countries():
        try:
            code = info.iso(2)
            lat, lon = info.latlng()[:2]
        except Exception:  # a territory without ISO code or coordinates: not a place we map
            continue
        if not (isinstance(code, str) and len(code) == 2):
            continue
        region = _text(info, "region")
        table[code.upper()] = Country(
            code.upper(), _text(info, "name"), float(lat), float(lon), region,
            _text(info, "subregion"),
        )  # fmt: skip
    return table


def _text(info: Any, attr: str) -> str:
    try:
        value = getattr(info, attr)()
    except Exception:
        return ""
    return value if isinstance(value, str) else ""


def region(country: str) -> str | None:
    """The country's region (``Europe``, ``Americas``, ``Asia``, ``Africa``, ``Oceania``)."""
    found = countries().get(country.upper())
    return found.region or None if found else None


def distance_km(country_a: str, country_b: str) -> float | None:
    """Great-circle distance between two countries' centroids, km; None if either is unknown.

    The same country is 0 km apart (a large country's own extent is not measured).
    """
    a, b = countries().get(country_a.upper()), countries().get(country_b.upper())
    if a is None or b is None:
        return None
    if a.code == b.code:
        return 0.0
    return haversine_km(a.lat, a.lon, b.lat, b.lon)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))
