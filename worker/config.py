"""Configuration, read once from the environment and validated before anything runs.

The four variables of the public contract keep their names (``HALO_BASE_URL``,
``HALO_SUBSCRIPTION_KEY``, ``DATABASE_URL``, ``BROKER_URL``); everything else is prefixed
``HALO_RECONCILER_``. The README's configuration table lists every one with its default.
"""

from __future__ import annotations

import ipaddress
import os
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from reconciler.core.vocabulary import BusinessPolicy, InfrastructurePolicy

PRODUCTION_URL = "https://api.haloconnect.io"
STAGE_URL = "https://api.stage.haloconnect.io"


class ConfigError(Exception):
    """The environment holds a value we cannot run with. The message names the variable."""


class LogFormat(StrEnum):
    AUTO = "auto"  # pretty on a terminal, JSON otherwise
    JSON = "json"
    CONSOLE = "console"


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "halo-reconciler"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HALO_RECONCILER_", extra="ignore", frozen=True)

    # --- the public contract -------------------------------------------------------------------
    halo_base_url: str = Field(default=PRODUCTION_URL, validation_alias=_env("HALO_BASE_URL"))
    halo_subscription_key: SecretStr | None = Field(default=None, validation_alias=_env("HALO_SUBSCRIPTION_KEY"))
    database_url: str | None = Field(default=None, validation_alias=_env("DATABASE_URL"))
    broker_url: str | None = Field(default=None, validation_alias=_env("BROKER_URL"))
    data_dir: Path = Field(default_factory=_default_data_dir)

    # --- Halo client -------------------------------------------------------------------------
    halo_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    halo_max_attempts: int = Field(default=4, ge=1, le=10)
    halo_backoff_base_seconds: float = Field(default=0.5, ge=0, le=60)
    halo_retry_after_cap_seconds: float = Field(default=60.0, ge=0, le=3600)
    rate_limit_per_second: float = Field(default=20.0, gt=0, le=100_000)

    # --- policies (PRODUCT.md "Default policies") ---------------------------------------------
    infrastructure_policy: InfrastructurePolicy = InfrastructurePolicy.SWITCH
    business_policy: BusinessPolicy = BusinessPolicy.HOLD
    forbidden_threshold: int = Field(default=3, ge=1, le=100_000)
    forbidden_window_seconds: int = Field(default=3600, ge=1)
    flapping_window_seconds: int = Field(default=7 * 24 * 3600, ge=0)
    mass_change_min: int = Field(default=50, ge=1)
    mass_change_fraction: float = Field(default=0.10, gt=0, le=1)
    mass_change_window_seconds: int = Field(default=3600, ge=1)
    backoff_min_seconds: int = Field(default=60, ge=1)
    backoff_max_seconds: int = Field(default=3600, ge=1)
    sweep_stale_after_seconds: int = Field(default=24 * 3600, ge=0)
    sweep_interval_seconds: float = Field(default=300.0, ge=1, le=86_400)
    identifier_query: str | None = None  # SQL run as an immediate query; off by default (it costs money)

    # --- retention (docs/RUNBOOK.md "Retention") ------------------------------------------------
    # Routine `unchanged` verifications older than this fold into a daily count per practice;
    # decisions, switches, holds, tickets and every other verdict are kept for good.
    retention_days: int = Field(default=30, ge=1, le=3650)
    retention_batch_size: int = Field(default=5000, ge=100, le=50_000)  # rows per transaction
    retention_interval_seconds: float = Field(default=3600.0, ge=60, le=7 * 86_400)  # the beat's period
    retention_max_batches: int = Field(default=200, ge=1, le=100_000)  # per beat-fired pass

    # --- ticket sinks -------------------------------------------------------------------------
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # Apprise URLs (Slack, Teams, mailto://, PagerDuty, json://, ...), comma- or space-separated;
    # secrets, since most hold a token or a password. Each is parsed by Apprise at start-up.
    notify_urls: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # Where the console is reached by the people notified: links are CONSOLE_URL/tickets/{id} and
    # /practices/{id}. HALO_RECONCILER_CONSOLE_URL; HALO_RECONCILER_PUBLIC_URL is its older name.
    public_url: str | None = Field(default=None, validation_alias=AliasChoices(
        "HALO_RECONCILER_CONSOLE_URL", "HALO_RECONCILER_PUBLIC_URL", "public_url"))
    # Where docs/RUNBOOK.md is read (https://.../docs/RUNBOOK.md): the console's ticket pages and the
    # rendered alert rules link to its sections. None: the console's own /runbook page.
    runbook_url: str | None = None
    # An outbox row that used this many attempts is `failed` (kept; `outbox retry` sends it again).
    outbox_max_attempts: int = Field(default=50, ge=1, le=10_000)
    # `health` fails (check `outbox`) when an event has waited undelivered longer than this.
    outbox_alert_seconds: int = Field(default=900, ge=1, le=30 * 86_400)

    # --- people in the loop -------------------------------------------------------------------
    # A business change switches on this many approvals by different people (the last asks Halo again).
    approvals_required: int = Field(default=1, ge=1, le=5)

    # --- events -------------------------------------------------------------------------------
    # Celery task events (worker_send_task_events, task_send_sent_event): what Flower and
    # `celery events` show. Off by default (each task then costs a few more broker messages).
    task_events: bool = False
    # A reconciliation past the hard limit is killed; its practice's run lock outlives it by 30 s. The
    # soft limit (80 % of it) must exceed one reconciliation's worst case (``worst_case_run_seconds``).
    task_time_limit_seconds: int = Field(default=1800, ge=10, le=3600)
    # A run's claim on its practice lives this long unless the live run renews it (every third of it): a
    # worker host that died mid-run leaves its practice for at most this long.
    claim_lock_seconds: int = Field(default=60, ge=6, le=3600)
    # Redis hands an unacknowledged message (its worker host died) to another worker after this long.
    broker_visibility_timeout_seconds: int = Field(default=3600, ge=5, le=7 * 24 * 3600)
    # The worker's Prometheus endpoint (main process; off when unset). HALO_RECONCILER_METRICS_PORT.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    report_timeout_seconds: float = Field(default=0.5, gt=0, le=30)

    # --- no deaf window, the breaker, escalation (PRODUCT.md contract details) ------------------
    # A report for a GUID Halo just confirmed is re-checked at most this long after the confirmation,
    # doubling with each consecutive one up to the maximum (back to the minimum after a switch or an
    # hour without reports).
    recheck_min_seconds: float = Field(default=10.0, gt=0, le=3600)
    recheck_max_seconds: float = Field(default=900.0, gt=0, le=3600)
    # After unauthorized, ip_not_allowed or quota_exceeded: one probe after this long, doubling.
    breaker_probe_seconds: float = Field(default=60.0, gt=0, le=86_400)
    breaker_probe_max_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    # Consecutive halo_unavailable for one practice longer than this opens unavailable_persists.
    unavailable_ticket_after_seconds: int = Field(default=86_400, ge=0)

    # --- the embedded Valkey server (no BROKER_URL) --------------------------------------------
    # It stops by itself after this long with no client connected (worker.embedded_watch).
    embedded_idle_seconds: int = Field(default=300, ge=1, le=7 * 86_400)

    # --- the HTTP API (`halo-reconciler serve`) ------------------------------------------------
    # Bearer tokens an application may present under /v1/, comma-separated; none: /v1 refuses all.
    api_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = ()

    # --- the operator console (`/` of `serve`) -------------------------------------------------
    # Signs session cookies and CSRF tokens; unset: one is generated and kept in data_dir (0600).
    console_secret: SecretStr | None = None
    # Secure cookies: None (auto) sets Secure unless the request is plain http to a loopback host.
    console_secure_cookies: bool | None = None
    console_session_seconds: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600)
    # Trusted-proxy mode (an SSO proxy such as oauth2-proxy): the operator's name comes from this
    # header, and only on requests from these addresses or networks (comma-separated).
    console_proxy_header: str | None = None
    console_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    # Sign-in throttle: failed attempts per name and per client address within the window.
    console_signin_attempts: int = Field(default=5, ge=1, le=1000)
    console_signin_window_seconds: int = Field(default=900, ge=1, le=86_400)
    # Failures from one address (any names) before that address is locked too: higher than the
    # per-name limit, so one person's typos behind a shared proxy do not lock everyone out.
    console_signin_address_attempts: int = Field(default=50, ge=1, le=100_000)

    # --- logging ------------------------------------------------------------------------------
    log_format: LogFormat = LogFormat.AUTO
    log_level: str = "INFO"

    @field_validator("halo_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for the local simulator)")
        return value

    @field_validator("halo_subscription_key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value().strip()
        if not secret:
            return None
        if any(ch.isspace() for ch in secret) or not secret.isprintable():
            raise ValueError("must be a single printable token without white space")
        return SecretStr(secret)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, (list, tuple)):
            tokens = []
            for item in value:
                secret = item.get_secret_value() if isinstance(item, SecretStr) else str(item).strip()
                if not secret:
                    continue
                if any(ch.isspace() for ch in secret) or not secret.isprintable():
                    raise ValueError("each token must be printable, without white space (tokens are comma-separated)")
                tokens.append(SecretStr(secret))
            return tuple(tokens)
        return value

    @field_validator("console_secret")
    @classmethod
    def _check_console_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip()) < 32:
            raise ValueError("must be at least 32 characters (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("console_proxy_header")
    @classmethod
    def _check_proxy_header(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().lower()
        if not all(ch.isalnum() or ch == "-" for ch in value):
            raise ValueError("must be an HTTP header name such as X-Forwarded-User")
        return value

    @field_validator("console_trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            for item in value:
                try:
                    ipaddress.ip_network(str(item), strict=False)
                except ValueError:
                    raise ValueError(f"{str(item)[:60]!r} is not an IP address or network") from None
            return tuple(str(item) for item in value)
        return value

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _split_notify_urls(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if isinstance(value, (list, tuple)):
            urls = [item.get_secret_value() if isinstance(item, SecretStr) else str(item).strip() for item in value]
            urls = [url for url in urls if url]
            if urls:
                # Apprise is imported only when notifications are configured (start-up time).
                from reconciler.adapters.notify import InvalidNotifyUrl, check_urls

                try:
                    check_urls(urls)
                except InvalidNotifyUrl as exc:
                    raise ValueError(str(exc)) from None
            return tuple(SecretStr(url) for url in urls)
        return value

    @field_validator("runbook_url")
    @classmethod
    def _check_runbook_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("https://", "http://")) or len(value.split("://", 1)[1]) == 0:
            raise ValueError("must be an absolute URL of docs/RUNBOOK.md, starting with https:// (or http://)")
        return value.split("#", 1)[0]

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")) or len(value.split("://", 1)[1]) == 0:
            raise ValueError("must be the console's base URL (HALO_RECONCILER_CONSOLE_URL, or its older name "
                             "HALO_RECONCILER_PUBLIC_URL), starting with https:// (or http://)")
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        # Heroku-style and bare PostgreSQL URLs get the psycopg 3 driver we ship.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if not value.startswith(("postgresql+", "sqlite:")):
            raise ValueError("must be a PostgreSQL (postgresql://...) or SQLite (sqlite:///...) URL")
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("redis://", "rediss://", "valkey://", "unix://")):
            raise ValueError("must be a Redis URL (redis://host:port/db)")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> "Settings":
        if self.backoff_max_seconds < self.backoff_min_seconds:
            raise ValueError(
                "HALO_RECONCILER_BACKOFF_MAX_SECONDS must not be below HALO_RECONCILER_BACKOFF_MIN_SECONDS"
            )
        if self.broker_visibility_timeout_seconds <= self.run_lock_seconds:
            # Shorter, and a message still running (or waiting on a retry countdown) would be handed
            # to a second worker while the first holds it.
            raise ValueError(
                "HALO_RECONCILER_BROKER_VISIBILITY_TIMEOUT_SECONDS must be longer than "
                "HALO_RECONCILER_TASK_TIME_LIMIT_SECONDS + 30"
            )
        if self.recheck_max_seconds < self.recheck_min_seconds:
            raise ValueError(
                "HALO_RECONCILER_RECHECK_MAX_SECONDS must not be below HALO_RECONCILER_RECHECK_MIN_SECONDS"
            )
        if self.breaker_probe_max_seconds < self.breaker_probe_seconds:
            raise ValueError("HALO_RECONCILER_BREAKER_PROBE_MAX_SECONDS must not be below "
                             "HALO_RECONCILER_BREAKER_PROBE_SECONDS")
        if self.soft_time_limit_seconds <= self.worst_case_run_seconds:
            # Shorter, and a run still waiting on Halo's retries is stopped with no verdict, no backoff
            # and no audit record.
            raise ValueError(
                f"HALO_RECONCILER_TASK_TIME_LIMIT_SECONDS: its soft limit ({self.soft_time_limit_seconds} s, 80 %) "
                f"must exceed one reconciliation's worst case ({self.worst_case_run_seconds:.0f} s: "
                f"{self.calls_per_run} calls × (HALO_RECONCILER_HALO_MAX_ATTEMPTS × HALO_RECONCILER_HALO_TIMEOUT_SECONDS"
                " + (attempts - 1) × HALO_RECONCILER_HALO_RETRY_AFTER_CAP_SECONDS)); raise the limit or lower those"
            )
        if self.console_proxy_header and not self.console_trusted_proxies:
            raise ValueError("HALO_RECONCILER_CONSOLE_TRUSTED_PROXIES is required when "
                             "HALO_RECONCILER_CONSOLE_PROXY_HEADER is set (whose header to believe)")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("HALO_RECONCILER_WEBHOOK_SECRET is required when HALO_RECONCILER_WEBHOOK_URL is set")
        return self

    # --- derived -------------------------------------------------------------------------------
    @property
    def is_embedded(self) -> bool:
        """No broker configured: the embedded broker and coordination store in ``data_dir``."""
        return self.broker_url is None

    @property
    def soft_time_limit_seconds(self) -> int:
        """Celery's soft limit: the run gets ``SoftTimeLimitExceeded`` here, the kill at the hard one."""
        return int(self.task_time_limit_seconds * 0.8)

    @property
    def calls_per_run(self) -> int:
        """Halo calls one reconciliation may make in a row: Find sites, the identifier query (when
        configured), Get site status on the new GUID, pairing, and Get site status after pairing."""
        return 4 + (1 if self.identifier_query else 0)

    @property
    def worst_case_run_seconds(self) -> float:
        """Every call of one run at its worst: each attempt times out, each wait is the Retry-After cap."""
        one_call = (self.halo_max_attempts * self.halo_timeout_seconds
                    + (self.halo_max_attempts - 1) * self.halo_retry_after_cap_seconds)
        return self.calls_per_run * one_call

    @property
    def coordination_wait_seconds(self) -> float:
        """How long a task that met the coordination store away waits for it in its worker before it asks
        the broker to retry (the same Redis, usually away with it): a restart takes seconds. Within the
        soft limit, with the run's own worst case still to come after the wait."""
        return max(0.0, min(120.0, (self.soft_time_limit_seconds - self.worst_case_run_seconds) / 2))

    @property
    def run_lock_seconds(self) -> int:
        """How long a practice's run lock lives: past the hard time limit, so it never outlives a run."""
        return self.task_time_limit_seconds + 30

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'halo-reconciler.sqlite3'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    # --- secrets inside URLs ------------------------------------------------------------------
    # ``DATABASE_URL`` and ``BROKER_URL`` may carry a password. Kept as plain strings (SQLAlchemy and
    # kombu want them so), they are masked wherever the settings print themselves, and their
    # passwords are handed to the log redactor (``url_secrets``).
    # ``HALO_RECONCILER_WEBHOOK_URL`` may carry a password, or a signature or token in its query string
    # (a signed URL): the password and every query value are masked there too.
    def __repr_args__(self):  # noqa: ANN204 - pydantic's own signature
        for name, value in super().__repr_args__():
            if name in _URL_FIELDS and isinstance(value, str):
                value = mask_url_password(value)
            elif name in _SIGNED_URL_FIELDS and isinstance(value, str):
                value = mask_url_query(mask_url_password(value))
            yield name, value

    @property
    def url_secrets(self) -> tuple[str, ...]:
        """The passwords inside ``DATABASE_URL`` and ``BROKER_URL`` (none for the embedded default)."""
        found: list[str] = []
        for password in (url_password(self.database_url), url_password(self.broker_url),
                         url_password(self.webhook_url), *url_query_secrets(self.webhook_url)):
            if password:  # as written in the URL, and percent-decoded as a driver's error may show it
                found.extend(dict.fromkeys((password, unquote(password))))
        return tuple(found)

    @property
    def notify_url_values(self) -> tuple[str, ...]:
        """The notification URLs themselves, for the one place that builds the notifier."""
        return tuple(url.get_secret_value() for url in self.notify_urls)

    @property
    def outbox_targets(self) -> tuple[str, ...]:
        """The outbox targets this deployment sends to: events for another wait for nobody."""
        return tuple(t for t, on in (("webhook", bool(self.webhook_url and self.webhook_secret)),
                                     ("notify", bool(self.notify_urls))) if on)

    @property
    def subscription_key(self) -> str | None:
        """The key itself, for the one place that puts it in a header."""
        return self.halo_subscription_key.get_secret_value() if self.halo_subscription_key else None


_URL_FIELDS = frozenset({"database_url", "broker_url"})
_SIGNED_URL_FIELDS = frozenset({"webhook_url"})
_QUERY_VALUE = re.compile(r"(?P<name>[?&][^=&#]*=)(?P<value>[^&#]*)")
# A query value shorter than this is not a credential (``?v=2``): the log redactor would blank it everywhere.
_QUERY_SECRET_MIN = 8
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)(?P<password>[^/?#@]*)@")


def url_password(url: str | None) -> str | None:
    """The password of ``scheme://user:password@host/...``, or None."""
    match = _URL_PASSWORD.match(url or "")
    return match.group("password") or None if match else None


def mask_url_password(url: str) -> str:
    """The URL with its password replaced by ``***`` (what ``repr(Settings)`` shows)."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***@" if m.group("password") else m.group(0), url, count=1)


def mask_url_query(url: str) -> str:
    """The URL with every query value replaced by ``***`` (a signed URL's signature, a token)."""
    return _QUERY_VALUE.sub(lambda m: f"{m.group('name')}***" if m.group("value") else m.group(0), url)


def url_query_secrets(url: str | None) -> list[str]:
    """The query values of a URL long enough to be a credential (for the log redactor)."""
    return [m.group("value") for m in _QUERY_VALUE.finditer(url or "") if len(m.group("value")) >= _QUERY_SECRET_MIN]


_ALIASES = {
    "halo_base_url": "HALO_BASE_URL",
    "halo_subscription_key": "HALO_SUBSCRIPTION_KEY",
    "database_url": "DATABASE_URL",
    "broker_url": "BROKER_URL",
}


def _variable(field: str) -> str:
    if field in _ALIASES.values() or field.startswith("HALO_RECONCILER_"):  # located by the alias itself
        return field
    return _ALIASES.get(field, f"HALO_RECONCILER_{field.upper()}")


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = error.get("loc") or ()
            name = _variable(str(loc[0])) if loc else "configuration"
            # Never echo the input: it may be the subscription key.
            problems.append(f"{name}: {error.get('msg', 'invalid value')}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, loaded once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
