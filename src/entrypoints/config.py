"""Configuration from the environment: the seed's variable names, plus ours.

Nothing set means the embedded default: SQLite and files in ``DATA_DIR``, the
in-process broker. ``MONGO_URI``, ``S3_ENDPOINT`` and ``NATS_URI`` each switch
one port to its production adapter, independently. Every name read here is
listed in ``.env.example`` (a test keeps the two in step).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from imagecore.errors import ValidationError
from imagecore.processing import PipelineSettings

__all__ = ["ENV_NAMES", "Settings"]

_TRUE = frozenset({"1", "true", "yes", "on"})


class _Env:
    """Reads typed values and remembers every name it was asked for."""

    names: list[str] = []  # noqa: RUF012 - filled once at import, read by tests and docs

    def __init__(self, source: Mapping[str, str]) -> None:
        self._source = source

    @classmethod
    def declare(cls, name: str) -> str:
        if name not in cls.names:
            cls.names.append(name)
        return name

    def text(self, name: str, default: str = "") -> str:
        return self._source.get(self.declare(name), default).strip() or default

    def flag(self, name: str, *, default: bool = False) -> bool:
        raw = self._source.get(self.declare(name), "").strip().lower()
        return raw in _TRUE if raw else default

    def number(self, name: str, default: float) -> float:
        raw = self._source.get(self.declare(name), "").strip()
        try:
            return float(raw) if raw else float(default)
        except ValueError:
            raise ValidationError(f"{name} must be a number, got {raw!r}") from None

    def whole(self, name: str, default: int) -> int:
        value = self.number(name, default)
        if not value.is_integer() or value < 0:
            raise ValidationError(f"{name} must be a whole number >= 0, got {value}")
        return int(value)

    def whole_or_none(self, name: str) -> int | None:
        """`whole`, or None when the variable is unset or empty."""
        if not self._source.get(self.declare(name), "").strip():
            return None
        return self.whole(name, 0)


@attrs.frozen
class Settings:
    """Everything the service reads from its environment."""

    host: str = "127.0.0.1"
    port: int = 3000
    data_dir: Path = Path("data")
    log_level: str = "info"
    # Production adapters (the seed's names); empty means embedded.
    mongo_uri: str = ""
    mongo_db: str = "imagecore"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "imagecore"
    s3_use_ssl: bool = False
    nats_uri: str = ""
    nats_subject_image_requests: str = "image.requests"
    nats_subject_notifications_sse: str = "notifications.sse"
    # Identity.
    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_key_id: str = ""
    jwt_leeway_seconds: float = 30.0
    trust_gateway_headers: bool = False
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # The console's development sign-in (POST /auth/dev-token), loopback clients only.
    dev_login: bool = False
    webhook_secret: str = ""
    webhook_allow_private: bool = False
    max_file_bytes: int = 0
    max_queued_files: int = 10_000
    rate_limit_user_per_minute: int = 600
    rate_limit_address_per_minute: int = 120
    # Event streams open at once, per user and per client address (0: no cap).
    max_event_streams_per_user: int = 20
    max_event_streams_per_address: int = 100
    # Uploads in progress at once, per user and per client address (0: no cap).
    max_uploads_per_user: int = 8
    max_uploads_per_address: int = 32
    # An upload's body: seconds without a byte, and seconds in all, before a 408.
    upload_idle_timeout_seconds: float = 30.0
    upload_body_timeout_seconds: float = 300.0
    # Free bytes DATA_DIR's disk keeps; below it /health answers 503 (0: no check).
    min_free_disk_bytes: int = 100 * 1024 * 1024
    # The worker.
    worker_concurrency: int = 0
    worker_prefetch: int | None = None  # None: one per pool slot
    processing_timeout_seconds: float = 120.0
    cleanup_interval_seconds: float = 1800.0
    reap_interval_seconds: float = 15.0
    shutdown_grace_seconds: float = 30.0
    pipeline: PipelineSettings = attrs.field(factory=PipelineSettings)

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
    def repository_kind(self) -> str:
        """Which repository adapter the container picks."""
        return "mongo" if self.mongo_uri else "sqlite"

    @property
    def storage_kind(self) -> str:
        """Which storage adapter the container picks."""
        return "s3" if self.s3_endpoint else "filesystem"

    @property
    def broker_kind(self) -> str:
        """Which broker adapter the container picks."""
        return "nats" if self.nats_uri else "memory"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; a malformed value raises `ValidationError` naming the variable."""
        env = _Env(os.environ if environ is None else environ)
        default = cls()
        proxies = env.text("TRUSTED_PROXIES", ",".join(default.trusted_proxies))
        return cls(
            host=env.text("HOST", default.host),
            port=env.whole("PORT", default.port),
            data_dir=Path(env.text("DATA_DIR", str(default.data_dir))),
            log_level=env.text("LOG_LEVEL", default.log_level).lower(),
            mongo_uri=env.text("MONGO_URI"),
            mongo_db=env.text("MONGO_DB", default.mongo_db),
            s3_endpoint=env.text("S3_ENDPOINT"),
            s3_region=env.text("S3_REGION", default.s3_region),
            s3_access_key=env.text("S3_ACCESS_KEY"),
            s3_secret_key=env.text("S3_SECRET_KEY"),
            s3_bucket=env.text("S3_BUCKET", default.s3_bucket),
            s3_use_ssl=env.flag("S3_USE_SSL"),
            nats_uri=env.text("NATS_URI"),
            nats_subject_image_requests=env.text(
                "NATS_SUBJECT_IMAGE_REQUESTS", default.nats_subject_image_requests
            ),
            nats_subject_notifications_sse=env.text(
                "NATS_SUBJECT_NOTIFICATIONS_SSE", default.nats_subject_notifications_sse
            ),
            jwt_secret=env.text("JWT_SECRET"),
            jwt_public_key=env.text("JWT_PUBLIC_KEY"),
            jwt_issuer=env.text("JWT_ISSUER"),
            jwt_audience=env.text("JWT_AUDIENCE"),
            jwt_key_id=env.text("JWT_KEY_ID"),
            jwt_leeway_seconds=env.number("JWT_LEEWAY_SECONDS", default.jwt_leeway_seconds),
            trust_gateway_headers=env.flag("TRUST_GATEWAY_HEADERS"),
            trusted_proxies=tuple(p.strip() for p in proxies.split(",") if p.strip()),
            dev_login=env.flag("DEV_LOGIN"),
            webhook_secret=env.text("WEBHOOK_SECRET"),
            webhook_allow_private=env.flag("WEBHOOK_ALLOW_PRIVATE"),
            max_file_bytes=env.whole("MAX_FILE_BYTES", default.max_file_bytes),
            max_queued_files=env.whole("MAX_QUEUED_FILES", default.max_queued_files),
            rate_limit_user_per_minute=env.whole(
                "RATE_LIMIT_USER_PER_MINUTE", default.rate_limit_user_per_minute
            ),
            rate_limit_address_per_minute=env.whole(
                "RATE_LIMIT_ADDRESS_PER_MINUTE", default.rate_limit_address_per_minute
            ),
            max_event_streams_per_user=env.whole(
                "MAX_EVENT_STREAMS_PER_USER", default.max_event_streams_per_user
            ),
            max_event_streams_per_address=env.whole(
                "MAX_EVENT_STREAMS_PER_ADDRESS", default.max_event_streams_per_address
            ),
            max_uploads_per_user=env.whole("MAX_UPLOADS_PER_USER", default.max_uploads_per_user),
            max_uploads_per_address=env.whole(
                "MAX_UPLOADS_PER_ADDRESS", default.max_uploads_per_address
            ),
            upload_idle_timeout_seconds=env.number(
                "UPLOAD_IDLE_TIMEOUT_SECONDS", default.upload_idle_timeout_seconds
            ),
            upload_body_timeout_seconds=env.number(
                "UPLOAD_BODY_TIMEOUT_SECONDS", default.upload_body_timeout_seconds
            ),
            min_free_disk_bytes=env.whole("MIN_FREE_DISK_BYTES", default.min_free_disk_bytes),
            worker_concurrency=env.whole("WORKER_CONCURRENCY", default.worker_concurrency),
            worker_prefetch=env.whole_or_none("WORKER_PREFETCH"),
            processing_timeout_seconds=env.number(
                "PROCESSING_TIMEOUT_SECONDS", default.processing_timeout_seconds
            ),
            cleanup_interval_seconds=env.number(
                "CLEANUP_INTERVAL_SECONDS", default.cleanup_interval_seconds
            ),
            reap_interval_seconds=env.number(
                "REAP_INTERVAL_SECONDS", default.reap_interval_seconds
            ),
            shutdown_grace_seconds=env.number(
                "SHUTDOWN_GRACE_SECONDS", default.shutdown_grace_seconds
            ),
            pipeline=PipelineSettings(
                lease_seconds=env.number("LEASE_SECONDS", default.pipeline.lease_seconds),
                max_attempts=env.whole("MAX_ATTEMPTS", default.pipeline.max_attempts),
                republish_after_seconds=env.number(
                    "REPUBLISH_AFTER_SECONDS", default.pipeline.republish_after_seconds
                ),
                retention_seconds=env.number(
                    "RETENTION_SECONDS", default.pipeline.retention_seconds
                ),
                stale_after_seconds=env.number(
                    "STALE_AFTER_SECONDS", default.pipeline.stale_after_seconds
                ),
            ),
        )


Settings.from_env({})
#: Every environment variable the service reads, in the order above.
ENV_NAMES: tuple[str, ...] = tuple(_Env.names)
