"""Settings: defaults, environment, user file, precedence and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from connectsw.conf import settings as settings_module
from connectsw.conf.settings import (
    DEFAULT_FILE,
    AnalyticsSettings,
    AntipiracySettings,
    DaskSettings,
    EngineSettings,
    GateSettings,
    LearningSettings,
    LicensingSettings,
    LLMSettings,
    MemorySettings,
    ResponsesSettings,
    ServerSettings,
    Settings,
    SmtpSettings,
    StoreSettings,
    get_settings,
    load_settings,
)
from connectsw.core.errors import ConfigError

SECTIONS: dict[str, type[BaseModel]] = {
    "dask": DaskSettings,
    "store": StoreSettings,
    "engine": EngineSettings,
    "gates": GateSettings,
    "licensing": LicensingSettings,
    "server": ServerSettings,
    "responses": ResponsesSettings,
    "smtp": SmtpSettings,
    "analytics": AnalyticsSettings,
    "antipiracy": AntipiracySettings,
    "memory": MemorySettings,
    "learning": LearningSettings,
    "llm": LLMSettings,
}


def write_user_file(text: str, path: Path | None = None) -> Path:
    target = path or Path.cwd() / "connectsw.toml"
    target.write_text(text, encoding="utf-8")
    return target


def test_defaults(isolated: Path) -> None:
    s = load_settings()
    assert s.mode == "local"
    assert s.data_dir == isolated
    assert s.dask == DaskSettings()
    assert s.dask.scheduler_address == ""
    assert (s.dask.n_workers, s.dask.threads_per_worker, s.dask.processes) == (2, 2, True)
    assert s.store.url == ""
    assert s.engine.default_retries == 0
    assert s.engine.retry_backoff == 0.5
    assert s.engine.heartbeat_interval == 2.0
    assert s.engine.lease_timeout == 30.0
    assert s.gates.test_command == ""
    assert s.gates.test_timeout == 600
    assert s.plugins == {}


def test_data_dir_defaults_to_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CONNECTSW_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert load_settings().data_dir == tmp_path / "xdg" / "connectsw"


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("CONNECTSW_MODE", "production")
    assert get_settings().mode == "local"
    get_settings.cache_clear()
    assert get_settings().mode == "production"


def test_env_overrides_top_level_and_nested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTSW_MODE", "production")
    monkeypatch.setenv("CONNECTSW_DASK__SCHEDULER_ADDRESS", "tcp://10.0.0.5:8786")
    monkeypatch.setenv("CONNECTSW_ENGINE__DEFAULT_RETRIES", "3")
    monkeypatch.setenv("CONNECTSW_GATES__TEST_COMMAND", "make test")
    s = load_settings()
    assert s.mode == "production"
    assert s.dask.scheduler_address == "tcp://10.0.0.5:8786"
    assert s.engine.default_retries == 3
    assert s.gates.test_command == "make test"
    # The other nested values keep their defaults.
    assert s.dask.n_workers == 2
    assert s.engine.retry_backoff == 0.5


def test_user_file_in_working_directory() -> None:
    write_user_file(
        """
mode = "production"
[dask]
n_workers = 5
[engine]
lease_timeout = 12.5
"""
    )
    s = load_settings()
    assert s.mode == "production"
    assert s.dask.n_workers == 5
    assert s.dask.threads_per_worker == 2  # from default.toml
    assert s.engine.lease_timeout == 12.5


def test_precedence_env_over_file_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    write_user_file(
        """
[dask]
n_workers = 5
threads_per_worker = 3
"""
    )
    monkeypatch.setenv("CONNECTSW_DASK__N_WORKERS", "7")
    s = load_settings()
    assert s.dask.n_workers == 7  # env beats the file
    assert s.dask.threads_per_worker == 3  # file beats default.toml
    assert s.dask.processes is True  # default.toml


def test_explicit_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTSW_ENGINE__RETRY_BACKOFF", "2")
    s = load_settings(engine={"retry_backoff": 0.01})
    assert s.engine.retry_backoff == 0.01


def test_connectsw_config_names_the_user_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_user_file('mode = "local"\n[dask]\nn_workers = 9\n')  # ignored: CONNECTSW_CONFIG wins
    other = write_user_file(
        "[dask]\nn_workers = 4\n[gates]\ntest_timeout = 30\n", tmp_path / "elsewhere.toml"
    )
    monkeypatch.setenv("CONNECTSW_CONFIG", str(other))
    s = load_settings()
    assert s.dask.n_workers == 4
    assert s.gates.test_timeout == 30


def test_connectsw_config_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("CONNECTSW_CONFIG", str(missing))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(missing) in str(info.value)
    assert "not found" in str(info.value)


def assert_one_line_without_cause(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    assert "Traceback" not in text
    assert exc.__cause__ is None
    assert exc.__suppress_context__  # raised ``from None``: no chained traceback
    return text


def test_invalid_env_value_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTSW_ENGINE__DEFAULT_RETRIES", "-1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert text.startswith("invalid settings: ")
    assert "engine.default_retries: " in text
    assert "greater than or equal to 0" in text


@pytest.mark.slow
def test_invalid_setting_on_the_command_line_is_one_line() -> None:
    env = {**os.environ, "CONNECTSW_ENGINE__DEFAULT_RETRIES": "-1"}
    env.pop("CONNECTSW_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "connectsw.cli.main", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == ConfigError.exit_code
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: invalid settings: engine.default_retries: ")


def test_invalid_values_are_listed_field_by_field() -> None:
    write_user_file('mode = "turbo"\n[dask]\nn_workers = "many"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert "mode: " in text
    assert "dask.n_workers: " in text
    assert "; " in text


def test_unknown_key_in_user_file() -> None:
    write_user_file("[engine]\ncolour = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert "engine.colour: unknown key" in text


def test_toml_syntax_error_is_config_error() -> None:
    write_user_file("[dask\nn_workers = 2\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert text.startswith("invalid config file ")
    assert (
        "TOML syntax error: Expected at the end of a table declaration (at line 1, column 6)"
        in text
    )


def test_shipped_default_toml_equals_class_defaults() -> None:
    """Every documented key is in default.toml with exactly the code's default."""
    with DEFAULT_FILE.open("rb") as fh:
        shipped = tomllib.load(fh)
    fields = Settings.model_fields
    # data_dir (machine dependent) is documented as a comment; plugins has no defaults.
    assert set(shipped) == set(fields) - {"data_dir", "plugins"}
    assert "data_dir" in DEFAULT_FILE.read_text(encoding="utf-8")
    for key, value in shipped.items():
        model = SECTIONS.get(key)
        if model is not None:
            # As TOML holds it: JSON types, and no key where the default is None.
            expected = model().model_dump(mode="json", exclude_none=True)
            assert value == expected, f"[{key}] of default.toml drifted"
            # A key whose default is None (e.g. smtp.password_file) is a comment there.
            unset = {n for n, f in model.model_fields.items() if f.default is None}
            assert set(value) | unset == set(model.model_fields), f"[{key}] keys drifted"
        else:
            assert value == fields[key].default, f"{key} of default.toml drifted"


def test_settings_without_any_file_equal_shipped_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Loading with the shipped file gives the same settings as the classes alone."""
    with_file = load_settings()
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    monkeypatch.setattr(settings_module, "DEFAULT_FILE", empty)
    without_file = load_settings()
    assert with_file.model_dump() == without_file.model_dump()


def test_store_url_defaults_to_sqlite_in_data_dir(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = load_settings()
    assert s.store_url == f"sqlite:///{isolated / 'connectsw.db'}"
    monkeypatch.setenv("CONNECTSW_STORE__URL", "sqlite:////srv/connectsw/state.db")
    assert load_settings().store_url == "sqlite:////srv/connectsw/state.db"


@pytest.mark.parametrize(
    "url",
    ["sqlite:////tmp/x.db?password=Sekr1tPW", "sqlite:////tmp/x.db?mode=ro", "sqlite:////tmp/x#s"],
)
def test_a_sqlite_url_with_a_query_or_fragment_is_refused_unshown(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """Trial 7, F9: the query became part of the file's name, and a ?password= in it was
    shown in the store's messages; ?mode=ro was silently ignored."""
    monkeypatch.setenv("CONNECTSW_STORE__URL", url)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert text.startswith("invalid settings: store.url: a sqlite:///PATH URL takes no query")
    assert "Sekr1tPW" not in text and "x.db" not in text
    assert not list(Path("/tmp").glob("x.db?*"))


def test_an_empty_data_dir_is_refused(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trial 7, M1: ``CONNECTSW_DATA_DIR=`` put the store in the current directory."""
    monkeypatch.setenv("CONNECTSW_DATA_DIR", "")
    with pytest.raises(ConfigError, match="invalid settings: data_dir: is empty"):
        load_settings()


def test_plugin_config_is_namespaced(monkeypatch: pytest.MonkeyPatch) -> None:
    write_user_file(
        """
[plugins.jira]
url = "https://jira.example.com"
project = "SW"

[plugins.slack]
channel = "#builds"
"""
    )
    monkeypatch.setenv("CONNECTSW_PLUGINS__SLACK__TOKEN", "xoxb")
    s = load_settings()
    assert s.plugin_config("jira") == {"url": "https://jira.example.com", "project": "SW"}
    assert s.plugin_config("slack") == {"channel": "#builds", "token": "xoxb"}
    assert s.plugin_config("absent") == {}
    # A copy: a plugin cannot change another's (or its own stored) settings.
    s.plugin_config("jira")["url"] = "changed"
    assert s.plugin_config("jira")["url"] == "https://jira.example.com"


# -- durations have ranges (issue 5, fault 6) ----------------------------------------

DURATIONS = [
    ("dask", "connect_timeout"),
    ("dask", "worker_wait"),
    ("engine", "retry_backoff"),
    ("engine", "retry_backoff_max"),
    ("engine", "default_timeout"),
    ("engine", "heartbeat_interval"),
    ("engine", "lease_timeout"),
    ("gates", "test_timeout"),
]


@pytest.mark.parametrize(("section", "key"), DURATIONS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "Infinity"])
def test_nan_and_inf_durations_are_refused_from_env(
    monkeypatch: pytest.MonkeyPatch, section: str, key: str, value: str
) -> None:
    monkeypatch.setenv(f"CONNECTSW_{section.upper()}__{key.upper()}", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert f"{section}.{key}: " in text


@pytest.mark.parametrize(("section", "key"), DURATIONS)
def test_nan_durations_are_refused_from_toml(section: str, key: str) -> None:
    write_user_file(f"[{section}]\n{key} = nan\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{section}.{key}: Input should be a finite number" in str(info.value)


def test_huge_timeouts_mean_seven_days() -> None:
    write_user_file("[engine]\ndefault_timeout = 1e10\n[gates]\ntest_timeout = 1e300\n")
    s = load_settings()
    assert s.engine.default_timeout == 604800
    assert s.gates.test_timeout == 604800


@pytest.mark.parametrize(
    ("section", "key", "value", "rule"),
    [
        ("engine", "retry_backoff", "3601", "less than or equal to 3600"),
        ("engine", "retry_backoff", "-1", "greater than or equal to 0"),
        ("engine", "retry_backoff_max", "1e10", "less than or equal to 86400"),
        ("engine", "heartbeat_interval", "0", "greater than 0"),
        ("engine", "heartbeat_interval", "1e10", "less than or equal to 3600"),
        ("engine", "lease_timeout", "1e10", "less than or equal to 86400"),
        ("engine", "default_timeout", "-1", "greater than or equal to 0"),
        ("gates", "test_timeout", "0", "greater than 0"),
        ("dask", "connect_timeout", "0", "greater than 0"),
        ("dask", "connect_timeout", "301", "less than or equal to 300"),
        ("engine", "lease_timeout", "true", "expected a number, not true/false"),
    ],
)
def test_durations_out_of_range(section: str, key: str, value: str, rule: str) -> None:
    write_user_file(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert f"{section}.{key}: " in text
    assert rule in text


def test_lease_must_outlive_heartbeat() -> None:
    write_user_file("[engine]\nheartbeat_interval = 5\nlease_timeout = 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert text == (
        "invalid settings: engine: lease_timeout must be greater than heartbeat_interval"
    )
    write_user_file("[engine]\nheartbeat_interval = 5\nlease_timeout = 5.5\n")
    assert load_settings().engine.lease_timeout == 5.5


# -- settings that fail to parse are never echoed (issue 5, fault 8) ---------------------

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    "toml",
    [
        f'[store]\nurl = "postgresql://u:{SECRET}@db/app\n',  # unterminated string
        f'[store]\nurl = "host=db password={SECRET}\x01"\n',  # control character
        f"[store]\nurl = postgresql://u:{SECRET}@db/app\n",  # not a TOML value
        f'[store]\nurl = "a"\nurl = "{SECRET}"\n',  # duplicate key
        f'[store]\nurl = ["postgresql://u:{SECRET}@db/app"]\n',  # wrong type
        f'[store]\nurl = {{password = "{SECRET}"}}\n',  # wrong type (a table)
        f'mode = "{SECRET}"\n',
        f'[dask]\nn_workers = "{SECRET}"\nscheduler_address = 5\n',
        f'[engine]\nlease_timeout = "{SECRET}"\n',
        f'[plugins]\nslack = "{SECRET}"\n',
        f'[store]\nurl = "x"\npassword = "{SECRET}"\n',
    ],
)
def test_invalid_file_values_are_not_echoed(toml: str) -> None:
    write_user_file(toml)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert SECRET not in text
    assert SECRET[:4] not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONNECTSW_STORE", f'{{"url": "postgresql://u:{SECRET}@db'),
        ("CONNECTSW_STORE", f'{{"url": ["{SECRET}"]}}'),
        ("CONNECTSW_PLUGINS", f"not json {SECRET}"),
        ("CONNECTSW_PLUGINS__SLACK", f"{SECRET}"),
        ("CONNECTSW_MODE", SECRET),
        ("CONNECTSW_DASK__N_WORKERS", SECRET),
        ("CONNECTSW_ENGINE__LEASE_TIMEOUT", SECRET),
    ],
)
def test_invalid_env_values_are_not_echoed(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert SECRET not in text
    assert SECRET[:4] not in text


def test_toml_syntax_error_quotes_nothing_from_the_file() -> None:
    # tomllib says "Illegal character '\x07'": a character of a password.
    write_user_file('[store]\nurl = "postgresql://u:pa\x07ss@db/app"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert text.endswith(
        "connectsw.toml: TOML syntax error: Illegal character (at line 2, column 25)"
    )
    assert "\\x07" not in text and "'" not in text


def test_a_deeply_nested_config_file_is_one_line() -> None:
    write_user_file("x = " + "[" * 500 + "]" * 500 + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert text.endswith("nested too deeply")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[engine]\nlease_timeout = "30"\n',
            "engine.lease_timeout: expected a number, not a string",
        ),
        (
            '[engine]\nretry_backoff = "0.1"\n',
            "engine.retry_backoff: expected a number, not a string",
        ),
        (
            "[engine]\ndefault_retries = true\n",
            "engine.default_retries: expected a number, not true",
        ),
        ('[dask]\nprocesses = "yes"\n', "dask.processes: expected true or false, not a string"),
        ("[dask]\nprocesses = 1\n", "dask.processes: expected true or false, not a number"),
    ],
)
def test_a_config_file_value_of_the_wrong_toml_type_is_refused(text: str, message: str) -> None:
    write_user_file(text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in assert_one_line_without_cause(info.value)


def test_environment_values_are_text_and_still_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    write_user_file("[engine]\nlease_timeout = 40\nretry_backoff = 1\n")
    monkeypatch.setenv("CONNECTSW_DASK__PROCESSES", "false")
    settings = load_settings()
    assert settings.engine.lease_timeout == 40 and settings.engine.retry_backoff == 1.0
    assert settings.dask.processes is False


def test_llm_defaults_to_no_provider() -> None:
    llm = load_settings().llm
    assert (llm.provider, llm.model, llm.agents, llm.prices) == ("", "", {}, {})
    assert llm.openai.base_url == "" and llm.openai.api_key_file is None


def test_llm_provider_needs_a_model() -> None:
    with pytest.raises(ConfigError, match="llm.model: needed when llm.provider is set"):
        load_settings(llm={"provider": "openai"})


def test_llm_per_agent_overrides_and_prices_from_a_file() -> None:
    write_user_file(
        '[llm]\nprovider = "openai"\nmodel = "small"\n'
        '[llm.agents.backend-engineer]\nmodel = "big"\n'
        '[llm.prices."big"]\ninput = 3.0\noutput = 15.0\n'
    )
    llm = load_settings().llm
    assert llm.agents["backend-engineer"].model == "big"
    assert (llm.prices["big"].input, llm.prices["big"].output) == (3.0, 15.0)


def test_llm_misspelled_agent_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="llm.agents.architect.modle: unknown key"):
        load_settings(llm={"agents": {"architect": {"modle": "x"}}})


def test_readme_llm_example_is_valid_settings() -> None:
    import re

    import connectsw

    readme = (Path(connectsw.__file__).parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### A language model behind the agents", 1)[1]
    match = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert match, "the README's model section has no toml example"
    write_user_file(match.group(1))
    llm = load_settings().llm
    assert (llm.provider, llm.model) == ("openai", "gpt-4o-mini")
    assert llm.agents["backend-engineer"].model == "gpt-4o"
    assert llm.prices["gpt-4o-mini"].output == 0.6


@pytest.mark.parametrize("url", ["notaurl", "ftp://h/v1", "http://", "http://h:port/v1"])
def test_llm_base_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(llm={"openai": {"base_url": url}})
    assert str(info.value) == (
        "invalid settings: llm.openai.base_url: expected an http:// or https:// URL with a host"
    )


# -- a setting given twice (issue 5, kind 6; trial 6) ------------------------------------


@pytest.mark.parametrize("order", ["upper first", "lower first"])
def test_two_env_variables_differing_only_in_case_are_refused(
    monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    # Trial 6: the later one in the environment won, in silence (1 or 3 attempts).
    names = ["CONNECTSW_ENGINE__DEFAULT_RETRIES", "connectsw_engine__default_retries"]
    for name, value in zip(names if order == "upper first" else names[::-1], "02", strict=True):
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert assert_one_line_without_cause(info.value) == (
        "invalid settings: engine.default_retries is given twice: "
        "CONNECTSW_ENGINE__DEFAULT_RETRIES and connectsw_engine__default_retries "
        "(give each setting once)"
    )


def test_a_section_as_json_and_a_variable_of_a_part_of_it_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECTSW_ENGINE", '{"default_retries": 2}')
    monkeypatch.setenv("CONNECTSW_ENGINE__DEFAULT_RETRIES", "0")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert assert_one_line_without_cause(info.value) == (
        "invalid settings: engine is given twice: CONNECTSW_ENGINE and "
        "CONNECTSW_ENGINE__DEFAULT_RETRIES (give each setting once)"
    )
    monkeypatch.delenv("CONNECTSW_ENGINE__DEFAULT_RETRIES")
    assert load_settings().engine.default_retries == 2  # given once, as JSON: fine
    monkeypatch.delenv("CONNECTSW_ENGINE")
    monkeypatch.setenv("connectsw_llm__openai", '{"base_url": "http://127.0.0.1:9/v1"}')
    monkeypatch.setenv("CONNECTSW_LLM__OPENAI__API_KEY_ENV", "MY_KEY")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "llm.openai is given twice: connectsw_llm__openai and " in str(info.value)


def test_variables_that_are_not_settings_are_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "0")
    monkeypatch.setenv("connectsw_strict_plugins", "0")
    monkeypatch.setenv("CONNECTSW_ENGINE__DEFAULT_RETRIES", "1")
    monkeypatch.setenv("CONNECTSW_ENGINE__LEASE_TIMEOUT", "40")
    settings = load_settings()
    assert settings.engine.default_retries == 1 and settings.engine.lease_timeout == 40


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[engine]\ndefault_retries = 0\n[Engine]\ndefault_retries = 2\n",
            "engine is given twice: [Engine] and [engine]",
        ),
        ('mode = "local"\nMODE = "production"\n', "mode is given twice: MODE and mode"),
        ("[dask]\nn_workers = 1\n[DASK.x]\ny = 1\n", "dask is given twice: [DASK] and [dask]"),
    ],
)
def test_a_section_written_twice_in_different_case_in_a_file_is_refused(
    text: str, message: str
) -> None:
    path = write_user_file(text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert assert_one_line_without_cause(info.value) == (
        f"invalid config file {path.name}: {message} (give each setting once)"
    )


def test_a_section_in_other_case_is_checked_as_the_section(monkeypatch: pytest.MonkeyPatch) -> None:
    # `[Engine]` alone is honoured, as before; its values' TOML types are checked too.
    write_user_file("[Engine]\ndefault_retries = 2\n")
    assert load_settings().engine.default_retries == 2
    write_user_file('[Engine]\nlease_timeout = "30"\n')
    with pytest.raises(ConfigError, match="engine.lease_timeout: expected a number, not a string"):
        load_settings()


def test_a_setting_given_twice_is_one_line_and_exit_2_on_the_command_line(tmp_path: Path) -> None:
    for order in (1, -1):
        names = ["CONNECTSW_ENGINE__DEFAULT_RETRIES", "connectsw_engine__default_retries"]
        env = {k: v for k, v in os.environ.items() if k.upper() != names[0]}
        env.pop("CONNECTSW_DEBUG", None)
        env.update(dict(zip(names[::order], "02", strict=True)))
        proc = subprocess.run(
            [sys.executable, "-m", "connectsw.cli.main", "status"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=tmp_path,
        )
        assert proc.returncode == ConfigError.exit_code == 2, proc
        assert proc.stderr.strip().splitlines() == [
            "Error: invalid settings: engine.default_retries is given twice: "
            "CONNECTSW_ENGINE__DEFAULT_RETRIES and connectsw_engine__default_retries "
            "(give each setting once)"
        ]


@pytest.mark.parametrize(
    "url",
    ["http://user:Pw9SECRET@127.0.0.1:9/v1", "http://Pw9SECRET@h/v1", "http://h/v1?a=Pw9SECRET@x"],
)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_llm_base_url_with_credentials_is_refused_unquoted(url: str, provider: str) -> None:
    """Trial 6 (issue 5, kind 10): a user:password in ``base_url`` passed the settings and
    then failed every task with aiohttp's ``ValueError: Cannot combine AUTHORIZATION
    header with AUTH argument or credentials encoded in URL``."""
    with pytest.raises(ConfigError) as info:
        load_settings(llm={provider: {"base_url": url}})
    message = str(info.value)
    assert message.startswith(f"invalid settings: llm.{provider}.base_url: a user")
    assert "Pw9SECRET" not in message and "\n" not in message


#: Settings read as a command's words (shlex, POSIX quoting): gates/rules.py, gates/detect.py.
SHELL_WORD_SETTINGS = [("gates", "test_command"), ("gates", "server_command")]


@pytest.mark.parametrize(("section", "key"), SHELL_WORD_SETTINGS)
@pytest.mark.parametrize("value", ["'pytest -q", 'run "unterminated {port}', "trailing \\"])
def test_a_command_setting_with_broken_quoting_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, section: str, key: str, value: str
) -> None:
    """Issue 5, kind 10: a quoting typo is an invalid setting (exit 2, naming it) when
    settings load, not a crashed built-in gate rule when the gate runs."""
    monkeypatch.setenv(f"CONNECTSW_{section.upper()}__{key.upper()}", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert f"{section}.{key}: " in text, text
    assert "not a valid command" in text and ("quotation" in text or "escape" in text), text
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("section", "key"), SHELL_WORD_SETTINGS)
def test_a_command_setting_with_quoting_is_kept_as_written(section: str, key: str) -> None:
    write_user_file(f"[{section}]\n{key} = \"python -c 'print(1)' {{port}}\"\n")
    assert getattr(getattr(load_settings(), section), key) == "python -c 'print(1)' {port}"


@pytest.mark.parametrize("value", ["1_0", "0x10", "0b11", "1__0", "١٠", "1 0"])
def test_a_number_in_the_environment_is_written_plainly(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Trial 7, M2: ``CONNECTSW_ENGINE__DEFAULT_RETRIES=1_0`` gave 10 retries (pydantic
    reads text as Python's ``int`` would); a typo must not become another number."""
    monkeypatch.setenv("CONNECTSW_ENGINE__DEFAULT_RETRIES", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = assert_one_line_without_cause(info.value)
    assert text.startswith("invalid settings: engine.default_retries: "), text
    assert value not in text
    monkeypatch.delenv("CONNECTSW_ENGINE__DEFAULT_RETRIES")
    monkeypatch.setenv("CONNECTSW_ENGINE", json.dumps({"retry_backoff": value}))
    with pytest.raises(ConfigError, match="engine.retry_backoff: "):
        load_settings()


@pytest.mark.parametrize("value", ["3", " 3 ", "+3", "3.0", "3e0", ".5e1"])
def test_plain_numbers_in_the_environment_are_read(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CONNECTSW_ENGINE__RETRY_BACKOFF", value)
    assert load_settings().engine.retry_backoff == float(value)
