"""Store URLs are shown without their passwords."""

from __future__ import annotations

from connectsw.core.stores import redact


def test_redact_hides_passwords_in_urls():
    assert redact("postgresql://u:p@w@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact("postgresql://h/db?sslmode=require&password=x1") == (
        "postgresql://h/db?sslmode=require&password=***"
    )
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
