"""The settings class and where its values come from."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from connectsw.core.errors import ConfigError, describe_validation_error

DEFAULT_FILE = Path(__file__).with_name("default.toml")
USER_FILE = "connectsw.toml"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/connectsw``, or ``~/.local/share/connectsw``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "connectsw"


class _Section(BaseModel):
    """A ``[section]`` of the settings: a misspelled key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class DaskSettings(_Section):
    """Where stages run: an in-process LocalCluster or an existing scheduler."""

    scheduler_address: str = ""
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(2, ge=1)
    processes: bool = True


class StoreSettings(_Section):
    """The relational store: empty URL means SQLite in the data dir."""

    url: str = ""


class EngineSettings(_Section):
    """Retries, timeouts and liveness of the execution engine."""

    default_retries: int = Field(0, ge=0, le=20)
    retry_backoff: float = Field(0.5, ge=0)
    retry_backoff_max: float = Field(30.0, ge=0)
    default_timeout: float = Field(0, ge=0)
    heartbeat_interval: float = Field(2.0, gt=0)
    lease_timeout: float = Field(30.0, gt=0)


class GateSettings(_Section):
    """Options of the built-in gate rules."""

    test_command: str = ""
    test_timeout: float = Field(600, gt=0)


class Settings(BaseSettings):
    """All of ConnectSW's settings."""

    model_config = SettingsConfigDict(
        env_prefix="CONNECTSW_", env_nested_delimiter="__", extra="forbid"
    )

    mode: Literal["local", "production"] = "local"
    data_dir: Path = Field(default_factory=default_data_dir)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    gates: GateSettings = Field(default_factory=GateSettings)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Priority: explicit arguments > environment > user file > shipped defaults.
        user_file = Path(os.environ.get("CONNECTSW_CONFIG") or USER_FILE)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=user_file),
            TomlConfigSettingsSource(settings_cls, toml_file=DEFAULT_FILE),
        )

    @property
    def store_url(self) -> str:
        """The store URL, defaulting to the SQLite file in the data dir."""
        return self.store.url or f"sqlite:///{self.data_dir.expanduser() / 'connectsw.db'}"

    def plugin_config(self, name: str) -> dict[str, Any]:
        """Settings namespaced for one plugin (``[plugins.NAME]``)."""
        return dict(self.plugins.get(name, {}))


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning invalid values into one clear :class:`ConfigError`."""
    config = os.environ.get("CONNECTSW_CONFIG")
    if config and not Path(config).is_file():
        raise ConfigError(f"config file not found: {config}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {describe_validation_error(exc)}") from None
    except (OSError, ValueError) as exc:  # e.g. a TOML syntax error
        raise ConfigError(f"invalid config file: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (cached; tests call ``get_settings.cache_clear()``)."""
    return load_settings()
