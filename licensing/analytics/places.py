"""Country centroids and the distance between countries, for the geographic detector.

Source: Google's DSPL canonical dataset "countries.csv"
(https://developers.google.com/public-data/docs/canonical/countries_csv, CC BY 4.0):
latitude and longitude of each country's centroid, here for 62 of the countries
that send most traffic, rounded to 0.01°. A centroid stands for the whole country,
so distances are approximate by up to about the country's radius; the geographic
detector's margin (``antipiracy.geo_margin_km``) absorbs that.

Temporary home: the analytics geography module (``licensing/analytics/geo.py``,
``distance_km``) is meant to own the distance table; once it lands, :data:`CENTROIDS`
and :func:`distance_km` merge into it and the detectors keep using
:func:`centroid_rows` (the ``country_centroids`` relation) for SQL.
"""

from __future__ import annotations

import math

#: ISO 3166 alpha-2 → (latitude, longitude) of the country's centroid, degrees.
CENTROIDS: dict[str, tuple[float, float]] = {
    "AE": (23.42, 53.85), "AR": (-38.42, -63.62), "AT": (47.52, 14.55),
    "AU": (-25.27, 133.78), "BD": (23.68, 90.36), "BE": (50.50, 4.47),
    "BG": (42.73, 25.49), "BR": (-14.24, -51.93), "CA": (56.13, -106.35),
    "CH": (46.82, 8.23), "CL": (-35.68, -71.54), "CN": (35.86, 104.20),
    "CO": (4.57, -74.30), "CZ": (49.82, 15.47), "DE": (51.17, 10.45),
    "DK": (56.26, 9.50), "EG": (26.82, 30.80), "ES": (40.46, -3.75),
    "FI": (61.92, 25.75), "FR": (46.23, 2.21), "GB": (55.38, -3.44),
    "GR": (39.07, 21.82), "HK": (22.40, 114.11), "HU": (47.16, 19.50),
    "ID": (-0.79, 113.92), "IE": (53.41, -8.24), "IL": (31.05, 34.85),
    "IN": (20.59, 78.96), "IT": (41.87, 12.57), "JP": (36.20, 138.25),
    "KE": (-0.02, 37.91), "KR": (35.91, 127.77), "MX": (23.63, -102.55),
    "MY": (4.21, 101.98), "NG": (9.08, 8.68), "NL": (52.13, 5.29),
    "NO": (60.47, 8.47), "NZ": (-40.90, 174.89), "PE": (-9.19, -75.02),
    "PH": (12.88, 121.77), "PK": (30.38, 69.35), "PL": (51.92, 19.15),
    "PT": (39.40, -8.22), "RO": (45.94, 24.97), "RS": (44.02, 21.01),
    "RU": (61.52, 105.32), "SA": (23.89, 45.08), "SE": (60.13, 18.64),
    "SG": (1.35, 103.82), "SK": (48.67, 19.70), "TH": (15.87, 100.99),
    "TR": (38.96, 35.24), "TW": (23.70, 120.96), "UA": (48.38, 31.17),
    "US": (37.09, -95.71), "VN": (14.06, 108.28), "ZA": (-30.56, 22.94),
    "LT": (55.17, 23.88), "LU": (49.82, 6.13), "LV": (56.88, 24.60),
    "EE": (58.60, 25.01), "SI": (46.15, 15.00),
}  # fmt: skip

EARTH_RADIUS_KM = 6371.0


def distance_km(country_a: str, country_b: str) -> float | None:
    """Great-circle distance between two countries' centroids, km; None if one is unknown."""
    a, b = CENTROIDS.get(country_a.upper()), CENTROIDS.get(country_b.upper())
    if a is None or b is None:
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def centroid_rows() -> list[tuple[str, float, float]]:
    """``(country, lat, lon)`` rows: the detectors' ``country_centroids`` relation."""
    return [(code, lat, lon) for code, (lat, lon) in sorted(CENTROIDS.items())]
