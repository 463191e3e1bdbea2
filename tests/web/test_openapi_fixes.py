"""Regressions found by the property-based run (tests/web/test_schemathesis.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from connectsw.core.errors import NotFound
from connectsw.web.errors import ApiError
from connectsw.web.executions import MAX_EVENT_ID, _inside, last_event_id


def test_an_artifact_name_too_long_for_the_file_system_is_not_found(tmp_path: Path) -> None:
    # Was OSError ENAMETOOLONG from resolve()/is_file(): a 500.
    with pytest.raises(NotFound):
        _inside(tmp_path, "a" * 300)
    with pytest.raises(NotFound):
        _inside(tmp_path, "a/" * 3000 + "b")


def test_an_event_id_out_of_range_is_a_400_before_the_stream_starts() -> None:
    # Was an overflow in the store once the stream was prepared: a broken 500.
    for header in (str(MAX_EVENT_ID + 1), "99999999999999999999999", "-1"):
        request = make_mocked_request("GET", "/", headers={"Last-Event-ID": header})
        with pytest.raises(ApiError) as caught:
            last_event_id(request)
        assert caught.value.code == "bad_request"
    request = make_mocked_request("GET", f"/?after={MAX_EVENT_ID}")
    assert last_event_id(request) == MAX_EVENT_ID
    assert last_event_id(make_mocked_request("GET", "/")) == 0
