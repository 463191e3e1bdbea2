"""The settings class and where its values come from.

Every duration is a finite number of seconds in a documented range (default.toml
says each); NaN and infinity are refused (core/durations.py). A setting that fails
to validate is named with the rule it breaks, never with its value: a store URL or a
token must not reach a terminal or a log. A setting given twice (two environment
variables differing only in case, a section given as JSON and a variable of a part
of it, ``[engine]`` and ``[Engine]`` in one file) is refused, naming both spellings
(:func:`check_given_once`; issue 5, kind 6).
"""

from __future__ import annotations

import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError

from connectsw.core import textfiles
from connectsw.core.durations import PositiveSeconds, Seconds, Timeout, TimeoutOrZero
from connectsw.core.errors import ConfigError, describe_validation_error
from connectsw.licensing.tiers import DEFAULT_TIERS, Entitlements, Tier

DEFAULT_FILE = Path(__file__).with_name("default.toml")
USER_FILE = "connectsw.toml"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/connectsw``, or ``~/.local/share/connectsw``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "connectsw"


#: A number as text (an environment variable): digits with an optional sign, point
#: and exponent. Pydantic would also read ``1_0`` as 10 and ``0x10``-like forms
#: Python accepts (trial 7, M2): a typo must not become another number.
_PLAIN_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)


def _numeric(annotation: Any) -> bool:
    """Whether a field of this type holds a number (``int``, ``float``, or one or None)."""
    kinds = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    return any(k in (int, float) for k in (*kinds, annotation))


class _Section(BaseModel):
    """A ``[section]`` of the settings: a misspelled key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """A number given as text is written plainly (:data:`_PLAIN_NUMBER`); ``nan``
        and ``inf`` are left to the field's own rule."""
        field = cls.model_fields.get(info.field_name or "")
        if (
            isinstance(value, str)
            and field is not None
            and _numeric(field.annotation)
            and not _PLAIN_NUMBER.fullmatch(value)
            and value.strip().lower().lstrip("+-") not in ("nan", "inf", "infinity")
        ):
            raise ValueError("expected a number (digits, with an optional sign, point, exponent)")
        return value


class DaskSettings(_Section):
    """Where stages run: an in-process LocalCluster or an existing scheduler."""

    scheduler_address: str = ""
    connect_timeout: PositiveSeconds = Field(10.0, le=300)
    """Seconds to reach an external scheduler, above 0 and at most 300."""
    worker_wait: PositiveSeconds = Field(30.0, le=3600)
    """Seconds a cluster may have no worker: at connect (an external scheduler must have
    one within it) and while a stage runs (then the stage fails), above 0, at most 3600."""
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(2, ge=1)
    processes: bool = True


class StoreSettings(_Section):
    """The relational store: empty URL means SQLite in the data dir."""

    url: str = ""

    @field_validator("url")
    @classmethod
    def _sqlite_path_only(cls, url: str) -> str:
        # sqlite:///PATH names a file: a query string or fragment would become part of
        # its name (a ?password=... shown in every store message, trial 7), and SQLite
        # URI parameters (?mode=ro) would be silently ignored. Not echoed (a secret).
        if url.startswith("sqlite:") and ("?" in url or "#" in url):
            raise ValueError(
                "a sqlite:///PATH URL takes no query string or fragment ('?' or '#');"
                " the value is not shown"
            )
        return url


class EngineSettings(_Section):
    """Retries, timeouts and liveness of the execution engine."""

    default_retries: int = Field(0, ge=0, le=20)
    retry_backoff: Seconds = Field(0.5, le=3600)
    """Seconds before the first retry, 0 to 3600."""
    retry_backoff_max: Seconds = Field(30.0, le=86400)
    """Seconds, the longest wait between retries, 0 to 86400."""
    default_timeout: TimeoutOrZero = 0
    """Seconds per attempt, 0 = none; above 604800 (7 days) it is 7 days."""
    heartbeat_interval: PositiveSeconds = Field(2.0, le=3600)
    """Seconds between an owner's heartbeats, above 0 and at most 3600."""
    lease_timeout: PositiveSeconds = Field(30.0, le=86400)
    """Seconds of silence after which an owner is dead, above 0 and at most 86400."""

    @model_validator(mode="after")
    def _lease_outlives_heartbeat(self) -> EngineSettings:
        # Values are not quoted: settings errors never echo input.
        if self.lease_timeout <= self.heartbeat_interval:
            raise ValueError("lease_timeout must be greater than heartbeat_interval")
        return self


class RuleSet(_Section):
    """The rules a checkpoint type runs (reference §2.3 ``QUALITY_RULES``)."""

    rules: list[str] = Field(default_factory=list)
    """Rule names, run in addition to the stage's own gates."""
    not_run_passes: list[str] = Field(default_factory=list)
    """Rules whose "not run" (a tool is missing, e.g. chromium) counts as passed here."""


def _default_rule_sets() -> dict[str, RuleSet]:
    # The new-product workflow's last checkpoint: reference §2.3 "zero-errors-on-first-run".
    return {
        "implementation_complete": RuleSet(
            rules=["build", "server-start", "smoke-tests", "visual"],
            not_run_passes=["visual"],
        )
    }


def _command_words(value: str) -> str:
    """A setting read as a command's words (POSIX shell quoting, ``shlex.split``: gates/
    rules.py, gates/detect.py): broken quoting is refused when settings load (issue 5,
    kind 10), not found when the gate runs. The value is not echoed."""
    if value:
        import shlex  # only for a set command: the light commands read settings too

        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(
                f"not a valid command: {str(exc).lower()} (quote as a POSIX shell does)"
            ) from None
    return value


CommandWords = Annotated[str, AfterValidator(_command_words)]
"""A command setting split into words with POSIX quoting (not run by a shell)."""


class GateSettings(_Section):
    """Options of the built-in gate rules, the rule sets and the remediation loop."""

    test_command: CommandWords = ""
    """The tests' command, split into words with POSIX quoting (no shell); empty: pytest
    or unittest."""
    test_timeout: Timeout = 600
    """Seconds for the test command, above 0; above 604800 (7 days) it is 7 days."""
    build_command: str = ""
    """Shell command that builds the workspace; empty: detected (compileall, pip, npm)."""
    build_timeout: Timeout = 600
    """Seconds for the build, above 0; above 604800 (7 days) it is 7 days."""
    server_command: CommandWords = ""
    """Command that starts the service, ``{port}`` where its port goes; empty: detected."""
    health_path: str = Field("/health", pattern=r"^/")
    page_path: str = Field("/", pattern=r"^/")
    server_timeout: PositiveSeconds = Field(30.0, le=3600)
    """Seconds for the service to answer its health URL; above 0, at most 3600."""
    chromium: str = "/usr/bin/chromium"
    visual_timeout: PositiveSeconds = Field(60.0, le=3600)
    """Seconds for Chromium to load the page and take its screenshot; above 0, at most 3600."""
    pytest_plugins: bool = False
    """Load installed pytest plugins in the rules' pytest runs (slower; not with test_command)."""
    coverage_threshold: float = Field(80.0, ge=0, le=100, allow_inf_nan=False)
    remediation_rounds: int = Field(2, ge=0, le=20)
    """Times a failed gate sends its stage back to the agents before a person decides."""
    rule_sets: dict[str, RuleSet] = Field(default_factory=_default_rule_sets)
    """Checkpoint type -> the rules it runs."""


def _upper_tier_keys(cls: type, value: Any) -> Any:
    """Tier names in any case: environment variable names reach settings lower-cased
    (``CONNECTSW_LICENSING__TIERS__PRO__...``)."""
    if isinstance(value, dict):
        return {k.upper() if isinstance(k, str) else k: v for k, v in value.items()}
    return value


def _missing_tiers(by_tier: dict[Tier, Any]) -> list[str]:
    return [t.value for t in Tier if t not in by_tier]


class LicensingSettings(_Section):
    """License tiers and their entitlements: one table (``[licensing.tiers.NAME]``)."""

    tiers: dict[Tier, Entitlements] = Field(default_factory=lambda: dict(DEFAULT_TIERS))
    session_ttl: PositiveSeconds = Field(3600.0, le=2_592_000)
    """Seconds a session lives at most (reference §3.2: 1 hour); above 0, at most 30 days."""
    key_cache_seconds: Seconds = Field(5.0, le=300)
    """Seconds the server reuses a license it looked up for a key; a suspension or
    revocation takes effect within this window on every replica. 0 to 300."""
    session_heartbeat_timeout: PositiveSeconds = Field(300.0, le=86_400)
    """Seconds without a heartbeat after which a session is no longer active (reference:
    300); above 0, at most 86400."""

    _tier_names_any_case = field_validator("tiers", mode="before")(_upper_tier_keys)

    @model_validator(mode="after")
    def _every_tier(self) -> LicensingSettings:
        missing = _missing_tiers(self.tiers)
        if missing:
            raise ValueError(f"licensing.tiers: no entitlements for {', '.join(missing)}")
        return self


DEFAULT_IP_RATE_LIMIT = "100/minute"
"""The reference's edge limit per client IP (``limits`` notation; checked by the tests)."""


class ServerSettings(_Section):
    """The API server (``connectsw serve``)."""

    ip_rate_limit: str = DEFAULT_IP_RATE_LIMIT
    """Requests per client IP (reference: 100 per minute at the edge), in the ``limits``
    library's notation: ``N/second|minute|hour|day``."""
    usage_flush_seconds: PositiveSeconds = Field(1.0, le=3600)
    """Every this often, the requests' audit records are written to the store (one batch)
    and a usage log segment past its time is compacted to Parquet."""
    usage_segment_events: int = Field(10_000, ge=1, le=10_000_000)
    """A usage log segment is compacted to Parquet after this many events ..."""
    usage_segment_seconds: PositiveSeconds = Field(60.0, le=86_400)
    """... or this many seconds: one Parquet file per segment and UTC date."""

    max_bundle_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    """Largest git bundle ``new feature`` / ``fix`` may upload, bytes (413 above)."""
    max_import_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    """Largest CSV or Parquet file ``POST /v1/admin/analytics/import`` (and ``.../licenses``)
    accepts, bytes (413 ``payload_too_large`` above)."""
    run_workers: int = Field(default=2, ge=1)
    """Executions the server runs at once; more wait their turn."""

    @field_validator("ip_rate_limit")
    @classmethod
    def _parses(cls, value: str) -> str:
        if value == DEFAULT_IP_RATE_LIMIT:
            return value  # every command reads settings: importing `limits` costs ~40 ms
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError("expected N/second, N/minute, N/hour or N/day") from None
        return value

    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    """Direct peers whose ``X-Forwarded-For`` is believed (web/clientip.py): IP addresses
    or CIDR networks (``10.0.0.0/8``, ``2001:db8::/32``); none by default, so the client
    IP is the peer's."""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("expected a list of IP addresses or CIDR networks")
        networks = []
        for i, item in enumerate(value):
            try:
                networks.append(ip_network(item) if isinstance(item, str) else None)
            except ValueError:
                networks.append(None)
            if networks[-1] is None:  # the value is not quoted: settings never echo input
                raise ValueError(
                    f"item {i + 1}: not an IP address or a CIDR network (with no host bits set)"
                )
        return networks


class ResponsesSettings(_Section):
    """The anti-piracy response tiers (reference §3.3; licensing/responses.py).

    Links in the e-mails are these URLs with the license's public id (never its key)
    added as ``license=``; the upgrade link also names the reason and recommended tier.
    """

    upgrade_url: str = Field("https://connectsw.ai/upgrade", min_length=1, max_length=2000)
    resolve_url: str = Field("https://connectsw.ai/resolve", min_length=1, max_length=2000)
    appeal_url: str = Field("https://connectsw.ai/appeal", min_length=1, max_length=2000)
    support_email: str = Field("support@connectsw.ai", min_length=3, max_length=320)


class SmtpSettings(_Section):
    """Where ``connectsw outbox send`` delivers e-mail.

    The password comes from ``CONNECTSW_SMTP__PASSWORD`` or the file ``password_file``
    (its first line); it is never printed. ``username`` empty: no login.
    """

    host: str = Field("localhost", min_length=1, max_length=253)
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    """``starttls`` (port 587), ``ssl`` (implicit TLS, port 465) or ``none`` (loopback only)."""
    username: str = ""
    password: SecretStr | None = None
    password_file: Path | None = None
    from_addr: str = Field("ConnectSW <noreply@connectsw.ai>", min_length=3, max_length=320)
    timeout: PositiveSeconds = Field(30.0, le=600)
    """Seconds for each SMTP exchange; above 0, at most 600."""


class AntipiracySettings(_Section):
    """The anti-piracy detectors' thresholds (reference §3.2) and the score's cut-offs (§3.3).

    A *place* is a network: the IP's autonomous system (ASN) in its country, or its
    /24 (IPv4) or /48 (IPv6) when the ASN is unknown; a mobile carrier rotating
    addresses, or a CI provider's runners, stay one place.
    """

    _ip_thresholds: dict[Tier, int] = PrivateAttr(
        default_factory=lambda: {t: e.ip_threshold for t, e in DEFAULT_TIERS.items()}
    )
    multi_ip_grace: float = Field(1.5, ge=1.0, le=10.0)
    """Grace on that threshold (as the session tracker's 50 %): one person's home, office,
    phone and CI are 4 places on a PRO seat of 3; 1.0 is the reference's exact rule."""
    sessions_per_user: float = Field(2.0, ge=1.0, le=100.0)
    """Sessions one seat may hold at once (an interactive client and CI), before grace."""
    session_grace: float = Field(1.5, ge=1.0, le=10.0)
    """Concurrent sessions flag above max users × sessions_per_user × this."""
    session_bucket_seconds: int = Field(300, ge=60, le=3600)
    """Sessions are concurrent when they make requests in the same bucket of this many
    seconds (the session heartbeat timeout). It divides an hour (60, 120, 300, 600, 900,
    1800, 3600 ...): the scan keeps each session's buckets of an hour as a bit mask."""
    session_min_buckets: int = Field(3, ge=1, le=10_000)
    """Buckets above the allowance needed to flag: sustained or repeated, not one blip."""
    round_the_clock_hours: int = Field(24, ge=1, le=24)
    """Active hours in one UTC day that make it round-the-clock."""
    round_the_clock_places: int = Field(5, ge=1, le=10_000)
    """... together with at least this many places in one hour of that day."""
    burst_min_requests: int = Field(100, ge=1)
    """A burst hour: more than this many requests from one client (session, else IP) ..."""
    burst_max_interval: PositiveSeconds = Field(1.0, le=3600)
    """... at a mean interval below this many seconds."""
    burst_min_hours: int = Field(5, ge=0, le=10_000)
    """Bursts flag a license with more than this many burst hours in the window."""
    geo_speed_kmh: float = Field(900.0, gt=0, le=10_000)
    """Fastest believable travel between two uses (a plane), km/h."""
    geo_margin_km: float = Field(1500.0, ge=0, le=20_000)
    """Distance always believable: country centroids are approximate, borders are near."""
    geo_min_jumps: int = Field(3, ge=1, le=10_000)
    """Impossible jumps of one user in one UTC day needed to flag."""
    automation_agents: list[str] = Field(default_factory=lambda: ["%(ci)%"])
    """SQL LIKE patterns of user agents of automation (CI runners): the geographic
    detector leaves them out (a CI region is not where the person is); every other
    detector counts them."""
    score_upgrade: float = Field(0.5, ge=0, le=1)
    """Suspicion score from which the recommendation is a tier-1 upgrade prompt ..."""
    score_throttle: float = Field(0.7, ge=0, le=1)
    """... a tier-2 soft throttle ..."""
    score_suspend: float = Field(0.9, ge=0, le=1)
    """... a tier-3 suspension with appeal (only when two detectors or more agree)."""
    escalate_confidence: float = Field(0.9, ge=0, le=1)
    """A suspension whose strongest finding is more confident than this is escalated."""
    scan_interval: float = Field(3600.0, ge=0, le=604_800)
    """Seconds between two scans while ``connectsw serve`` runs (0: never), in a thread
    of its own: requests are not held up."""
    scan_window: str = Field("7d", pattern=r"^\d+[hdw]$")
    """The events each periodic scan reads: the last ``N`` hours, days or weeks."""
    scan_apply: bool = False
    """Whether a periodic scan takes the recommended response tiers (e-mails to the
    outbox, throttle, suspension), as ``antipiracy scan --apply``; off: it reports only."""

    @field_validator("session_bucket_seconds")
    @classmethod
    def _whole_minutes_dividing_an_hour(cls, value: int) -> int:
        # The hourly rollup keeps a bit per minute; a bucket is a run of whole minutes.
        if value % 60 or 3600 % value:
            raise ValueError(
                "antipiracy.session_bucket_seconds: must be whole minutes that divide an hour"
                " (60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800 or 3600)"
            )
        return value

    @property
    def multi_ip_thresholds(self) -> dict[Tier, int]:
        """Places per seat in one UTC day before the multi-IP detector flags (× max users):
        each tier's ``licensing.tiers.NAME.ip_threshold`` (reference §3.2: FREE 2, PRO 3,
        BUSINESS 10, ENTERPRISE 50), the one rule the gateway's per-request flag
        (licensing/ipwatch.py) reads too. Set by :class:`Settings` from its tiers; the
        shipped table on a section made alone."""
        return dict(self._ip_thresholds)

    def with_tiers(self, tiers: dict[Tier, Entitlements]) -> AntipiracySettings:
        """This section reading the multi-IP thresholds of ``tiers``."""
        copy = self.model_copy()
        copy._ip_thresholds = {t: e.ip_threshold for t, e in tiers.items()}
        return copy

    @model_validator(mode="after")
    def _ordered(self) -> AntipiracySettings:
        if not self.score_upgrade <= self.score_throttle <= self.score_suspend:
            raise ValueError("antipiracy: score_upgrade <= score_throttle <= score_suspend")
        return self


class AnalyticsSettings(_Section):
    """Usage analytics (``connectsw analytics``): where events live, the analysts' SQL limits,
    geography."""

    usage_url: str = ""
    """fsspec URL or path of the usage events' root (``date=YYYY-MM-DD/*.parquet`` under
    it); empty: ``DATA_DIR/usage``."""
    sql_memory_limit: str = Field("1GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
    """Memory an analyst's query may use (DuckDB's ``memory_limit``), e.g. ``1GB``."""
    sql_threads: int = Field(2, ge=1, le=256)
    """Threads an analyst's query may use."""
    sql_timeout: PositiveSeconds = Field(60.0, le=86_400)
    """Seconds an analyst's query may run before it is interrupted; above 0, at most 86400."""
    sql_max_rows: int = Field(100_000, ge=1, le=100_000_000)
    """Rows at most in one ``POST /v1/admin/analytics/sql`` answer (its ``max_rows`` may ask
    fewer; the CLI prints them all)."""
    compact_below_bytes: int = Field(64 * 1024 * 1024, ge=0)
    """After an import, a date partition's Parquet files smaller than this are merged into
    one (0: never compact)."""
    geo_country_db: str = ""
    """A MaxMind database (``.mmdb``: GeoLite2-Country or -City) for ``country``; empty: the
    ``geoip2fast`` package's bundled data. Needs the ``maxminddb`` package."""
    geo_asn_db: str = ""
    """A MaxMind GeoLite2-ASN database (``.mmdb``) for ``asn``; empty: ``asn`` is filled only
    where the import gives it (the bundled data has AS names, not numbers)."""


class MemorySettings(_Section):
    """Project memory (``connectsw memory``, agents' context, ``/v1/memory/context``):
    where it lives, how text becomes vectors, when it is indexed. Issue 8, reference §2.2."""

    url: str = ""
    """LanceDB URI of the memory database (a directory, or an object-storage URL such as
    ``s3://bucket/memory``); empty: ``DATA_DIR/memory``."""
    embedder: str = Field("minilm", pattern=r"^[a-z][a-z0-9_.-]*$")
    """The registered embedder (``register_embedders``): ``minilm`` (all-MiniLM-L6-v2;
    ``wordllama`` when its package is missing), ``mpnet`` (all-mpnet-base-v2: better
    retrieval, about 8 times minilm's compute per text), ``wordllama``, ``hashing``,
    ``sentence-transformers`` or a plugin's. The default is minilm because the engine
    embeds every document its agents write at each checkpoint: a 384-token document
    took mpnet 1.2 s on a busy 2-core machine (minilm 0.14 s)."""
    sentence_transformers_model: str = ""
    """A local sentence-transformers model (folder or cached name) for that embedder."""
    search: Literal["vector", "hybrid"] = "vector"
    """How a search ranks: ``vector`` (the embedder's nearest neighbours, prefiltered by
    project) or ``hybrid`` (LanceDB's vector + full-text BM25, fused by RRF). Measured
    on tests/core/test_memory_retrieval.py (62 paraphrased questions), hit@1/hit@5:
    mpnet 0.77/0.94 vector vs 0.52/0.89 hybrid; minilm 0.63/0.89 vs 0.42/0.87;
    wordllama 0.40/0.61 vs 0.27/0.58; hashing 0.11/0.32 vs 0.15/0.34: word overlap
    misleads on paraphrases."""
    nprobes: int = Field(64, ge=1, le=4096)
    """IVF partitions a vector search visits once the index is built (there is one per
    8,192 rows: 13 for 100k rows, so 64 visits every one up to ~520k rows)."""
    refine_factor: int = Field(5, ge=1, le=100)
    """Once the index is built, a vector search takes ``refine_factor`` x limit
    candidates by the index's 2-bit codes and re-ranks them by their exact distance
    (top-10 recall against the exact search on 100k rows, bench/: 0.97 at 3, 0.99 at 5)."""
    embed_threads: int = Field(1, ge=1, le=256)
    """BLAS threads of the ``minilm`` and ``mpnet`` encoders. 1 suits a shared or small machine
    (OpenBLAS's waiting threads spin: on a busy 2-core machine 2 threads were 6x slower);
    more speeds up bulk adds on an idle many-core one."""
    index_threshold: int = Field(5_000, ge=256)
    """Rows in the memory table from which the vector (IVF_RQ) and project (bitmap)
    indexes are built; below it a search is exact (brute force, ~2 us a row on a busy
    2-core machine: ~10 ms at 5,000). At least 256 (IVF training needs rows)."""
    auto: bool = True
    """Remember agents' documents at checkpoints and people's feedback by themselves."""
    context_items: int = Field(5, ge=0, le=50)
    """Memories given to each agent that reads memory (0: none)."""
    supersede_similarity: float = Field(0.97, gt=0, le=1)
    """Cosine similarity from which a new memory of the same project and type supersedes
    a live one (a near duplicate is never a second row)."""
    max_content_chars: int = Field(8000, ge=100, le=1_000_000)
    """Longest text stored per memory (longer documents are cut there)."""


class LearningSettings(_Section):
    """What the execution history changes in new plans (issue 8 part 3, reference §2.4's
    "Estimate generator" and "Error prediction"; the thresholds are ConnectSW's own:
    the reference gives none). ``connectsw insights`` shows the same statistics."""

    enabled: bool = True
    """Apply the history to new plans (estimates, extra retries, preferences)."""
    min_runs: int = Field(3, ge=1, le=10_000)
    """Runs of a task (same workflow, task id and agent) before its history is used:
    below it the estimate is ``default_task_seconds`` and no retries are added."""
    default_task_seconds: PositiveSeconds = Field(60.0, le=604_800)
    """Seconds: the estimate of a task without enough history."""
    failure_rate: float = Field(0.3, gt=0, le=1, allow_inf_nan=False)
    """Failed attempts / attempts at or above which a task is failure-prone."""
    extra_retries: int = Field(1, ge=0, le=10)
    """Retries added to a failure-prone task's own (its workflow's, else
    ``engine.default_retries``); ``retries`` written in a task-graph file, 0 included,
    are never changed; at most 20 in all."""
    preferences: bool = True
    """Give each task the project's preferences from earlier checkpoints of its stage."""
    max_preferences: int = Field(10, ge=0, le=100)
    """The newest this many preferences per task are applied."""
    window: int = Field(200, ge=0, le=1_000_000)
    """The statistics (estimates, extra retries, insights) read the latest this many
    executions of each workflow (most recently updated first), so a plan's cost stays
    flat as the history grows and old behaviour fades out; 0: the whole history."""


class LLMEndpointSettings(_Section):
    """Where one built-in provider's API is and where its key comes from.

    The key is read from the environment variable ``api_key_env`` or, when that is
    unset or empty, from the first line of ``api_key_file``; neither set: no key is
    sent (a local server such as Ollama or llama.cpp needs none). It is never logged.
    """

    base_url: str = Field("", max_length=2000)
    """The API's root URL; empty: the provider's public API."""
    api_key_env: str = Field("", max_length=200)
    """Name of the environment variable holding the key; empty: the provider's usual one."""
    api_key_file: Path | None = None
    """A file whose first line is the key (e.g. ``/run/secrets/openai``)."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        if not value:
            return value
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port  # raises for a port that is not a number
        except ValueError:
            ok = False
        if not ok:  # the value is not quoted: it may hold credentials
            raise ValueError("expected an http:// or https:// URL with a host")
        if "@" in value:
            # aiohttp refuses a user:password in the URL beside the key's header, and a
            # "@" in the query makes the user name ambiguous (core/redact.py splits at
            # the last "@"): refused, never quoted.
            raise ValueError(
                "a user name or password in the URL is not supported (the key is sent"
                " by api_key_env or api_key_file); write any other '@' as %40."
                " The URL is not shown"
            )
        return value


class LLMAgentSettings(_Section):
    """One agent type's overrides of the ``[llm]`` choices (``[llm.agents.NAME]``);
    ``provider = ""`` keeps that agent on its built-in template."""

    provider: str | None = None
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)


class LLMPrice(_Section):
    """A model's price in US dollars per million tokens (``[llm.prices."MODEL"]``)."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)


class LLMSettings(_Section):
    """The language model behind the built-in agents (agents/llm/).

    ``provider`` empty: no model; the agents keep their deterministic built-in
    behaviour. Otherwise the name of a registered provider (``openai`` for any
    OpenAI-compatible chat-completions server, ``anthropic``, or a plugin's).
    """

    provider: str = Field("", max_length=100)
    model: str = Field("", max_length=200)
    max_tokens: int = Field(4096, ge=1, le=1_000_000)
    """Tokens a reply may have at most."""
    temperature: float = Field(0.2, ge=0, le=2)
    timeout: PositiveSeconds = Field(120.0, le=3600)
    """Seconds one call may take (within the task's own deadline); above 0, at most 3600."""
    retries: int = Field(4, ge=0, le=20)
    """Calls repeated after HTTP 429, 5xx or a dropped connection."""
    retry_backoff: Seconds = Field(1.0, le=600)
    """Seconds before the first repeat, doubling each time; 0 to 600."""
    retry_backoff_max: Seconds = Field(30.0, le=3600)
    """Seconds, the longest wait between calls, a server's ``Retry-After`` included."""
    fix_rounds: int = Field(3, ge=0, le=20)
    """Times an engineer agent gets its failing tests' output back to fix its code."""
    prompts_dir: str = ""
    """A directory of prompt files (``NAME.md``) replacing the shipped ones; a project's
    ``.connectsw/prompts/`` comes first."""
    openai: LLMEndpointSettings = Field(default_factory=LLMEndpointSettings)
    anthropic: LLMEndpointSettings = Field(default_factory=LLMEndpointSettings)
    agents: dict[str, LLMAgentSettings] = Field(default_factory=dict)
    """Per agent type (``product-manager``, ``backend-engineer`` ...): its own provider,
    model, max_tokens or temperature."""
    prices: dict[str, LLMPrice] = Field(default_factory=dict)
    """Per model name: dollars per million input and output tokens (cost 0 when absent)."""

    @model_validator(mode="after")
    def _model_with_provider(self) -> LLMSettings:
        if self.provider and not self.model:
            raise ValueError("llm.model: needed when llm.provider is set")
        return self


class Settings(BaseSettings):
    """All of ConnectSW's settings."""

    model_config = SettingsConfigDict(
        env_prefix="CONNECTSW_", env_nested_delimiter="__", extra="forbid"
    )

    mode: Literal["local", "production"] = "local"
    data_dir: Path = Field(default_factory=default_data_dir)
    dask: DaskSettings = Field(default_factory=DaskSettings)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_given(cls, value: Any) -> Any:
        # An empty value read as Path("") is the current directory: the store appeared
        # wherever a command ran (trial 7, M1).
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty: unset it for the default, or give a directory")
        return value

    store: StoreSettings = Field(default_factory=StoreSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    gates: GateSettings = Field(default_factory=GateSettings)
    licensing: LicensingSettings = Field(default_factory=LicensingSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    responses: ResponsesSettings = Field(default_factory=ResponsesSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)

    antipiracy: AntipiracySettings = Field(default_factory=AntipiracySettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    learning: LearningSettings = Field(default_factory=LearningSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_ip_threshold_per_tier(self) -> Settings:
        # The detector reads the tiers' ip_threshold: one rule, in licensing.tiers.
        self.antipiracy = self.antipiracy.with_tiers(self.licensing.tiers)
        return self

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
        check_env_given_once(os.environ)
        required = bool(os.environ.get("CONNECTSW_CONFIG"))
        path = _user_file()
        user_file = sections_given_once(read_config_file(path, required=required), path)
        check_toml_types(user_file, path)
        return (
            init_settings,
            env_settings,
            InitSettingsSource(settings_cls, user_file),
            InitSettingsSource(settings_cls, read_config_file(DEFAULT_FILE, required=True)),
        )

    @property
    def store_url(self) -> str:
        """The store URL, defaulting to the SQLite file in the data dir."""
        return self.store.url or f"sqlite:///{self.data_dir.expanduser() / 'connectsw.db'}"

    def plugin_config(self, name: str) -> dict[str, Any]:
        """Settings namespaced for one plugin (``[plugins.NAME]``)."""
        return dict(self.plugins.get(name, {}))


ENV_PREFIX = "CONNECTSW_"
ENV_DELIMITER = "__"


def check_given_once(spellings: Mapping[str, tuple[str, ...]], where: str) -> None:
    """Refuse a setting given twice: the one rule for every source of settings.

    ``spellings`` maps each name as the user wrote it (``CONNECTSW_ENGINE``,
    ``[Engine]``) to the setting it addresses, lower-cased (``("engine",)``). Two
    names address one setting twice when their paths are equal (they differ only
    in case, and the source ignores case) or one is a part of the other (a whole
    section as JSON and a variable of one of its keys): which one wins would depend
    on the order of the environment or a merge nobody sees.

    Raises:
        ConfigError: ``WHERE: engine.default_retries is given twice:
            CONNECTSW_ENGINE__DEFAULT_RETRIES and connectsw_engine__default_retries
            (give each setting once)``, naming both spellings (sorted, so the same
            whatever the order), never a value.
    """
    ordered = sorted(spellings.items(), key=lambda item: (item[1], item[0]))
    for (first, path), (second, other) in zip(ordered, ordered[1:], strict=False):
        if other[: len(path)] == path:
            raise ConfigError(
                f"{where}: {'.'.join(path)} is given twice: {first} and {second} "
                "(give each setting once)"
            ) from None


def check_env_given_once(environ: Mapping[str, str]) -> None:
    """Refuse a setting given twice in the environment (:func:`check_given_once`).

    Variable names are matched as pydantic-settings matches them: without regard to
    case, ``__`` between the levels. Only names of settings count
    (``CONNECTSW_DATA_DIR``, ``CONNECTSW_ENGINE__...``); ``CONNECTSW_CONFIG`` and the
    plugin variables are not settings.

    Raises:
        ConfigError: ``invalid settings: ... is given twice: A and B ...``.
    """
    spellings = {}
    for name in environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = tuple(name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER))
        if path[0] in Settings.model_fields:
            spellings[name] = path
    check_given_once(spellings, "invalid settings")


def sections_given_once(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A config file's tables with the names of settings in lower case, once each.

    Top-level names are matched without regard to case (``[Engine]`` is ``[engine]``),
    so the same one written twice in different case is refused
    (:func:`check_given_once`); the names are then lower-cased so that every later
    check (:func:`check_toml_types`) sees them. Other names are left as written
    (refused as unknown by validation). Keys inside a section are matched exactly.

    Raises:
        ConfigError: ``invalid config file PATH: engine is given twice: [Engine] and
            [engine] ...``.
    """
    spellings = {
        f"[{key}]" if isinstance(value, dict) else key: (key.lower(),)
        for key, value in data.items()
        if key.lower() in Settings.model_fields
    }
    check_given_once(spellings, f"invalid config file {path}")
    return {
        key.lower() if key.lower() in Settings.model_fields else key: value
        for key, value in data.items()
    }


def check_toml_types(data: dict[str, Any], path: Path) -> None:
    """Refuse a config file value whose TOML type is not the setting's.

    TOML has numbers and booleans, so ``lease_timeout = "30"``, ``processes = "yes"``
    or ``default_retries = true`` are mistakes, not values to convert (environment
    variables are text by nature and stay converted). Raises :class:`ConfigError`
    naming the setting, never the value.
    """
    for section, values in data.items():
        field = Settings.model_fields.get(section)
        model = field.annotation if field is not None else None
        if not isinstance(values, dict) or not (
            isinstance(model, type) and issubclass(model, _Section)
        ):
            continue
        for name, value in values.items():
            sub = model.model_fields.get(name)
            if sub is None or sub.annotation is None:
                continue  # unknown keys are refused by validation, with their name
            try:  # the field's type with its constraints (NotBool, ranges) as validation has it
                form: Any = (
                    Annotated[(sub.annotation, *sub.metadata)] if sub.metadata else sub.annotation
                )
                adapter: TypeAdapter[Any] = TypeAdapter(form)
                converted = adapter.validate_python(value)
            except ValidationError:
                continue  # refused by validation, with the rule
            mismatch = (isinstance(converted, bool) and not isinstance(value, bool)) or (
                isinstance(converted, int | float)
                and not isinstance(converted, bool)
                and (isinstance(value, str | bool))
            )
            if mismatch:
                kind = "true or false" if isinstance(converted, bool) else "a number"
                got = (
                    "a string"
                    if isinstance(value, str)
                    else "true or false"
                    if isinstance(value, bool)
                    else "a number"
                )
                raise ConfigError(
                    f"invalid config file {path}: {section}.{name}: expected {kind}, not {got}"
                ) from None


def _user_file() -> Path:
    return Path(os.environ.get("CONNECTSW_CONFIG") or USER_FILE)


MAX_CONFIG_BYTES = 1_048_576
"""A config file is at most 1 MiB."""


def read_config_file(path: Path, *, required: bool) -> dict[str, Any]:
    """The tables of the TOML file ``path``; ``{}`` if it is optional and absent.

    Read as every user file is (core/textfiles.py): UTF-8, or UTF-16/UTF-32 with a
    byte-order mark. Messages give positions, never the file's content.

    Raises:
        ConfigError: ``config file PATH: ...``: not found (a broken symbolic link
            is named so, even for the optional ``./connectsw.toml``), a directory,
            unreadable, larger than :data:`MAX_CONFIG_BYTES`, not valid text, or a
            TOML syntax error with its line and column.
    """
    with textfiles.check_path(f"config file {path}", ConfigError):
        if not required and not path.exists() and not textfiles.is_broken_link(path):
            return {}
    try:
        data = textfiles.read_bytes(path, MAX_CONFIG_BYTES)
        if len(data) > MAX_CONFIG_BYTES:
            raise textfiles.TextFileError(f"larger than {MAX_CONFIG_BYTES} bytes (1 MiB)")
        return tomllib.loads(textfiles.decode(data, show_bytes=False))
    except textfiles.TextFileError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid config file {path}: {_toml_problem(exc)}") from None
    except RecursionError:  # tomllib recurses per level of nested arrays and tables
        raise ConfigError(f"invalid config file {path}: nested too deeply") from None


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning invalid values into one clear :class:`ConfigError`.

    The message names the setting and the rule it breaks (``engine.lease_timeout:
    Input should be greater than 0``) or the place of a TOML syntax error; it never
    quotes a value, which may be a password.

    Raises:
        ConfigError: a config file that cannot be read (:func:`read_config_file`),
            an unknown key or a value out of its range.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # pydantic's messages state the rule; the input is kept apart (not shown).
        raise ConfigError(f"invalid settings: {describe_validation_error(exc)}") from None
    except SettingsError as exc:  # e.g. an env value that is not JSON: names field and source
        raise ConfigError(f"invalid settings: {one_line_text(str(exc))}") from None


def _toml_problem(exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's message without what it quotes from the file.

    Messages read ``Illegal character '\\x01' (at line 2, column 9)``: the quoted
    parts are dropped (they may be a character of a password), the position kept.
    """
    body, sep, where = one_line_text(str(exc)).rpartition(" (at ")
    if not sep:
        body = where
    problem = one_line_text("".join(body.split("'")[0::2]))
    return f"TOML syntax error: {problem}" + (f" (at {where}" if sep else "")


def one_line_text(text: str) -> str:
    """``text`` with its whitespace (newlines too) folded into single spaces."""
    return " ".join(text.split())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (cached; tests call ``get_settings.cache_clear()``)."""
    return load_settings()
