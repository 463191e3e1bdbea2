"""Settings: one pydantic-settings class read from TOML files and ``CONNECTSW_*`` env."""

from connectsw.conf.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
