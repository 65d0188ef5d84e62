"""Configuration from the environment: the seed's variable names, plus ours.

Each setting is declared once, as a field of `Settings`: its name, type and
default, and the environment variable it is read from (``_env``); the type
says how the variable is read. Nothing set means the embedded default:
SQLite and files in ``DATA_DIR``, the in-process broker. ``MONGO_URI``,
``S3_ENDPOINT`` and ``NATS_URI`` each switch one port to its production
adapter, independently; ``REPOSITORY_BACKEND``, ``STORAGE_BACKEND`` and
``BROKER_BACKEND`` name an adapter outright (``memory`` included). Every
variable is listed in ``.env.example`` (a test keeps the two in step).
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from entrypoints.plugins import plugged_in
from imagecore.errors import ValidationError
from imagecore.model import is_object_id
from imagecore.processing import PipelineSettings
from imagecore.products import CATALOGUE

__all__ = ["BACKENDS", "ENV_NAMES", "Settings"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
#: The adapters each port can be given, the default first.
BACKENDS: Mapping[str, tuple[str, ...]] = {
    "repository": ("sqlite", "mongo", "memory"),
    "storage": ("filesystem", "s3", "memory"),
    "broker": ("memory", "nats"),
}
_MAX_PORT = 65535
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: The worker-side settings read from the environment, by `PipelineSettings` field.
_PIPELINE_ENV = {
    "lease_seconds": "LEASE_SECONDS",
    "max_attempts": "MAX_ATTEMPTS",
    "republish_after_seconds": "REPUBLISH_AFTER_SECONDS",
    "retention_seconds": "RETENTION_SECONDS",
    "stale_after_seconds": "STALE_AFTER_SECONDS",
}


def _env(name: str, default: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - any setting's type
    """A setting read from the environment variable ``name``."""
    return attrs.field(default=default, metadata={"env": name}, **kwargs)


def _read(name: str, raw: str, kind: Any) -> Any:  # noqa: ANN401 - one reader per type
    """``raw`` (not empty) read as ``kind``; `ValidationError` naming ``name`` if it is not one."""
    if kind is bool:
        if raw.lower() not in _TRUE | _FALSE:
            raise ValidationError(f"{name} must be true or false, got {raw!r}")
        return raw.lower() in _TRUE
    if kind is str:
        return raw
    if kind is Path:
        return Path(raw)
    if kind == tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    try:
        number = float(raw)
    except ValueError:
        raise ValidationError(f"{name} must be a number, got {raw!r}") from None
    if kind is float:
        return number
    if not number.is_integer() or number < 0:
        raise ValidationError(f"{name} must be a whole number >= 0, got {number}")
    return int(number)


def _backend(port: str) -> Any:  # noqa: ANN401 - an attrs validator
    def check(_settings: object, _attribute: object, value: str) -> None:
        if value and value not in BACKENDS[port] and value not in plugged_in(port):
            choices = ", ".join((*BACKENDS[port], *plugged_in(port)))
            raise ValidationError(f"{port.upper()}_BACKEND must be one of {choices}, got {value!r}")

    return check


def _check_port(_settings: object, _attribute: object, value: int) -> None:
    if not 1 <= value <= _MAX_PORT:
        raise ValidationError(f"PORT (--port) must be between 1 and {_MAX_PORT}, got {value}")


def _check_log_level(_settings: object, _attribute: object, value: str) -> None:
    if value not in _LOG_LEVELS:
        choices = ", ".join(_LOG_LEVELS)
        raise ValidationError(f"LOG_LEVEL must be one of {choices}, got {value!r}")


def _check_product_ids(_settings: object, _attribute: object, value: tuple[str, ...]) -> None:
    keys = {p.key for p in CATALOGUE}
    for entry in value:
        key, _, product_id = (part.strip() for part in entry.partition("="))
        if key not in keys or not is_object_id(product_id):
            raise ValidationError(
                f"PRODUCT_IDS: {entry[:80]!r} is not key=id (a product key, 24 hex digits)"
            )


@attrs.frozen
class Settings:
    """Everything the service reads from its environment, each with its variable."""

    host: str = _env("HOST", "127.0.0.1")
    port: int = _env("PORT", 3000, validator=_check_port)
    data_dir: Path = _env("DATA_DIR", Path("data"))  # noqa: RUF009 - a Path is immutable
    log_level: str = _env("LOG_LEVEL", "info", converter=str.lower, validator=_check_log_level)
    # Production adapters (the seed's names); empty means embedded.
    mongo_uri: str = _env("MONGO_URI", "")
    mongo_db: str = _env("MONGO_DB", "imagecore")
    s3_endpoint: str = _env("S3_ENDPOINT", "")
    s3_region: str = _env("S3_REGION", "us-east-1")
    s3_access_key: str = _env("S3_ACCESS_KEY", "")
    s3_secret_key: str = _env("S3_SECRET_KEY", "")
    s3_bucket: str = _env("S3_BUCKET", "imagecore")
    s3_use_ssl: bool = _env("S3_USE_SSL", False)  # noqa: FBT003 - a default
    nats_uri: str = _env("NATS_URI", "")
    nats_subject_image_requests: str = _env("NATS_SUBJECT_IMAGE_REQUESTS", "image.requests")
    nats_subject_notifications_sse: str = _env(
        "NATS_SUBJECT_NOTIFICATIONS_SSE", "notifications.sse"
    )
    # An adapter named outright (see `BACKENDS`); empty: chosen by the variables above.
    repository_backend: str = _env("REPOSITORY_BACKEND", "", validator=_backend("repository"))
    storage_backend: str = _env("STORAGE_BACKEND", "", validator=_backend("storage"))
    broker_backend: str = _env("BROKER_BACKEND", "", validator=_backend("broker"))
    # Identity.
    jwt_secret: str = _env("JWT_SECRET", "")
    jwt_public_key: str = _env("JWT_PUBLIC_KEY", "")
    jwt_issuer: str = _env("JWT_ISSUER", "")
    jwt_audience: str = _env("JWT_AUDIENCE", "")
    jwt_key_id: str = _env("JWT_KEY_ID", "")
    jwt_leeway_seconds: float = _env("JWT_LEEWAY_SECONDS", 30.0)
    trust_gateway_headers: bool = _env("TRUST_GATEWAY_HEADERS", False)  # noqa: FBT003
    trusted_proxies: tuple[str, ...] = _env("TRUSTED_PROXIES", ("127.0.0.1", "::1"))
    # The gateway's x-user-origin values accepted (empty: any; the gateway checks them).
    gateway_origins: tuple[str, ...] = _env("GATEWAY_ORIGINS", ())
    # The old deployment's product ids, key=id: shown and accepted in place of ours.
    product_ids: tuple[str, ...] = _env("PRODUCT_IDS", (), validator=_check_product_ids)
    # The console's development sign-in (POST /auth/dev-token), loopback clients only.
    dev_login: bool = _env("DEV_LOGIN", False)  # noqa: FBT003
    webhook_secret: str = _env("WEBHOOK_SECRET", "")
    webhook_allow_private: bool = _env("WEBHOOK_ALLOW_PRIVATE", False)  # noqa: FBT003
    max_file_bytes: int = _env("MAX_FILE_BYTES", 0)
    max_queued_files: int = _env("MAX_QUEUED_FILES", 10_000)
    rate_limit_user_per_minute: int = _env("RATE_LIMIT_USER_PER_MINUTE", 600)
    rate_limit_address_per_minute: int = _env("RATE_LIMIT_ADDRESS_PER_MINUTE", 120)
    # Event streams open at once, per user and per client address (0: no cap).
    max_event_streams_per_user: int = _env("MAX_EVENT_STREAMS_PER_USER", 20)
    max_event_streams_per_address: int = _env("MAX_EVENT_STREAMS_PER_ADDRESS", 100)
    # Uploads in progress at once, per user and per client address (0: no cap).
    max_uploads_per_user: int = _env("MAX_UPLOADS_PER_USER", 8)
    max_uploads_per_address: int = _env("MAX_UPLOADS_PER_ADDRESS", 32)
    # An upload's body: seconds without a byte, and seconds in all, before a 408.
    upload_idle_timeout_seconds: float = _env("UPLOAD_IDLE_TIMEOUT_SECONDS", 30.0)
    upload_body_timeout_seconds: float = _env("UPLOAD_BODY_TIMEOUT_SECONDS", 300.0)
    # Free bytes DATA_DIR's disk keeps; below it /health answers 503 (0: no check).
    min_free_disk_bytes: int = _env("MIN_FREE_DISK_BYTES", 100 * 1024 * 1024)
    # The worker.
    worker_concurrency: int = _env("WORKER_CONCURRENCY", 0)
    worker_prefetch: int | None = _env("WORKER_PREFETCH", None)  # None: one per pool slot
    processing_timeout_seconds: float = _env("PROCESSING_TIMEOUT_SECONDS", 120.0)
    cleanup_interval_seconds: float = _env("CLEANUP_INTERVAL_SECONDS", 1800.0)
    reap_interval_seconds: float = _env("REAP_INTERVAL_SECONDS", 15.0)
    shutdown_grace_seconds: float = _env("SHUTDOWN_GRACE_SECONDS", 30.0)
    pipeline: PipelineSettings = attrs.field(
        factory=PipelineSettings, metadata={"env": _PIPELINE_ENV}
    )

    @property
    def concurrency(self) -> int:
        """Files one worker processes at once (``WORKER_CONCURRENCY``, default: the cores)."""
        return self.worker_concurrency or os.cpu_count() or 1

    @property
    def prefetch(self) -> int:
        """Files held beyond the pool slots (``WORKER_PREFETCH``, default: one per slot)."""
        return self.concurrency if self.worker_prefetch is None else self.worker_prefetch

    @property
    def jobs_in_hand(self) -> int:
        """Files one worker holds at once: one per pool slot, plus `prefetch`.

        A file held beyond the slots is claimed and its input fetched while the
        others are processed, and written ahead into a busy child's pipe, so a
        pool child never waits for storage, the repository or the event loop
        between files (its lease is renewed meanwhile). With one per slot each
        child has its next file at hand; with fewer, the child that finishes
        first may find none.
        """
        return self.concurrency + self.prefetch

    @property
    def product_id_map(self) -> dict[str, str]:
        """``PRODUCT_IDS`` as product key -> the id clients know it by."""
        pairs = (entry.partition("=") for entry in self.product_ids)
        return {key.strip(): product_id.strip() for key, _, product_id in pairs}

    @property
    def repository_kind(self) -> str:
        """Which repository adapter the container opens."""
        return self.repository_backend or ("mongo" if self.mongo_uri else "sqlite")

    @property
    def storage_kind(self) -> str:
        """Which storage adapter the container opens."""
        return self.storage_backend or ("s3" if self.s3_endpoint else "filesystem")

    @property
    def broker_kind(self) -> str:
        """Which broker adapter the container opens."""
        return self.broker_backend or ("nats" if self.nats_uri else "memory")

    @property
    def sole_worker(self) -> bool:
        """Whether this process's worker is the only one: with the in-process broker it is.

        The only worker may take over every file left PROCESSING at its start.
        """
        return self.broker_kind == "memory"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; a malformed value raises `ValidationError` naming the variable."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            env = field.metadata.get("env")
            if isinstance(env, str):
                if raw := source.get(env, "").strip():
                    values[field.name] = _read(env, raw, _TYPES[cls][field.name])
            elif isinstance(env, dict):
                nested = {
                    name: _read(var, raw, _TYPES[PipelineSettings][name])
                    for name, var in env.items()
                    if (raw := source.get(var, "").strip())
                }
                values[field.name] = PipelineSettings(**nested)
        return cls(**values)


_TYPES: dict[type, dict[str, Any]] = {
    kind: dict(typing.get_type_hints(kind)) for kind in (Settings, PipelineSettings)
}
_TYPES[Settings]["worker_prefetch"] = int  # unset (None) or a whole number


def _names() -> tuple[str, ...]:
    names: list[str] = []
    for field in attrs.fields(Settings):
        env = field.metadata.get("env")
        names.extend([env] if isinstance(env, str) else list(env.values()) if env else [])
    return tuple(names)


#: Every environment variable the service reads, in the order above.
ENV_NAMES: tuple[str, ...] = _names()
