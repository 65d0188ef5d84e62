"""The one place that picks adapters: a dependency-injector container.

Each port is one async resource that opens the adapter `Settings` selects
(``*_BACKEND``, or ``MONGO_URI``, ``S3_ENDPOINT`` and ``NATS_URI``), and only
that one, its libraries imported only then; another package's adapter is
selected by the name of its entry point (`entrypoints.plugins`).
`Runtime.open` opens them and `Runtime.close` closes them.
Nothing connects at import time. Tests override providers rather than patch.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
from collections.abc import AsyncIterator
from typing import Any, TypeVar, cast

import attrs
from dependency_injector import containers, providers

from adapters.filesystem import FilesystemImageStorage
from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker
from adapters.sqlite.repository import SqliteInstructionRepository
from adapters.vips.pool import ProcessPoolRunner
from adapters.webhooks import WebhookSender
from entrypoints.config import Settings
from entrypoints.http.auth import Authenticator, load_or_create_secret
from entrypoints.owner import DataDirOwner, own_data_dir
from entrypoints.plugins import load_adapter
from imagecore.errors import ValidationError
from imagecore.model import utc_now
from imagecore.ports import (
    ImageStorage,
    InstructionRepository,
    MessageBroker,
    RunProcessor,
    Webhooks,
)
from imagecore.products import CATALOGUE

__all__ = ["Container", "Runtime"]

_T = TypeVar("_T")


def _owns_data_dir(settings: Settings) -> bool:
    """Whether this process must be the only one of its stack (see `entrypoints.owner`).

    The in-process broker makes a process's worker the only one: it takes
    over every file left PROCESSING when it starts, so a second process on
    the same state would take over the first one's files. Only a stack whose
    state is all in this process's memory has nothing to share.
    """
    in_memory = settings.repository_kind == "memory" and settings.storage_kind == "memory"
    return settings.sole_worker and not in_memory


async def _owner(settings: Settings) -> AsyncIterator[DataDirOwner | None]:
    """The DATA_DIR lock, when the stack needs one, released when the runtime closes."""
    if not _owns_data_dir(settings):
        yield None
        return
    owner = own_data_dir(settings.data_dir)
    try:
        yield owner
    finally:
        owner.release()


def _backend_module(module: str, extra: str) -> Any:  # noqa: ANN401 - a module
    """A production adapter's module, imported only when selected; its extra, if missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        library = (exc.name or module).partition(".")[0]
        if library in {"imagecore", "adapters", "entrypoints"}:
            raise  # a broken installation of ours, not a missing extra
        raise ValidationError(
            f"the {extra} backend needs its libraries ({library} is missing): "
            f"pip install 'imagecore[{extra}]'"
        ) from exc


async def _plugged(port: str, name: str, settings: Settings) -> AsyncIterator[Any]:
    """An adapter another package provides by entry point (`entrypoints.plugins`)."""
    opener = contextlib.asynccontextmanager(load_adapter(port, name))
    async with opener(settings) as adapter:
        yield adapter


async def _repository(settings: Settings) -> AsyncIterator[InstructionRepository]:
    """The repository `Settings.repository_kind` names, open, and closed after."""
    kind = settings.repository_kind
    if kind == "memory":
        yield MemoryInstructionRepository()
        return
    if kind == "mongo":
        mongo = _backend_module("adapters.mongo", "mongo")
        repo: Any = await mongo.MongoInstructionRepository.open(
            settings.mongo_uri, settings.mongo_db
        )
    elif kind == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        repo = await SqliteInstructionRepository.open(settings.data_dir / "imagecore.sqlite3")
    else:
        async for plugged in _plugged("repository", kind, settings):
            yield plugged
        return
    try:
        yield repo
    finally:
        await repo.close()


async def _storage(settings: Settings) -> AsyncIterator[ImageStorage]:
    """The storage `Settings.storage_kind` names, open, and closed after."""
    scratch = settings.data_dir / "scratch"
    if settings.storage_kind == "memory":
        yield MemoryImageStorage(scratch)
        return
    if settings.storage_kind == "filesystem":
        yield FilesystemImageStorage(settings.data_dir / "files")
        return
    if settings.storage_kind != "s3":
        async for plugged in _plugged("storage", settings.storage_kind, settings):
            yield plugged
        return
    minio = _backend_module("adapters.minio", "s3")
    storage = await minio.MinioImageStorage.open(
        endpoint=settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        bucket=settings.s3_bucket,
        region=settings.s3_region,
        secure=settings.s3_use_ssl,
        scratch=scratch,
    )
    try:
        yield storage
    finally:
        await storage.close()


async def _broker(settings: Settings) -> AsyncIterator[MessageBroker]:
    """The broker `Settings.broker_kind` names, open, and closed after."""
    if settings.broker_kind == "memory":
        memory = MemoryMessageBroker()
        try:
            yield memory
        finally:
            memory.close()
        return
    if settings.broker_kind != "nats":
        async for plugged in _plugged("broker", settings.broker_kind, settings):
            yield plugged
        return
    nats = _backend_module("adapters.nats.broker", "nats")
    # One stream per jobs subject, so deployments sharing a server stay apart.
    suffix = re.sub(r"[^A-Za-z0-9]+", "_", settings.nats_subject_image_requests).upper()
    broker = await nats.NatsMessageBroker.open(
        settings.nats_uri,
        jobs_subject=settings.nats_subject_image_requests,
        stream=f"IMAGECORE_{suffix}",
        durable=f"imagecore-workers-{suffix.lower()}",
        notifications_subject=settings.nats_subject_notifications_sse,
        ack_wait_seconds=settings.pipeline.lease_seconds,
        max_deliver=settings.pipeline.max_attempts * 3,
    )
    try:
        yield broker
    finally:
        await broker.close()


async def _webhooks(settings: Settings) -> AsyncIterator[Webhooks]:
    secret = settings.webhook_secret or load_or_create_secret(settings.data_dir, "webhook-secret")
    sender = WebhookSender(secret, allow_private=settings.webhook_allow_private)
    try:
        yield sender
    finally:
        await sender.close()


async def _runner(settings: Settings) -> AsyncIterator[RunProcessor]:
    runner = ProcessPoolRunner(settings.concurrency, settings.processing_timeout_seconds)
    try:
        yield runner
    finally:
        runner.close()


class Container(containers.DeclarativeContainer):
    """Providers of every port, chosen from the settings."""

    settings = providers.Dependency(instance_of=Settings)

    # Before any adapter: a second process on the DATA_DIR refuses to start.
    owner = providers.Resource(_owner, settings)
    # One resource per port: it opens only the adapter the settings select.
    repository = providers.Resource(_repository, settings)
    storage = providers.Resource(_storage, settings)
    broker = providers.Resource(_broker, settings)
    runner = providers.Resource(_runner, settings)
    webhooks = providers.Resource(_webhooks, settings)
    authenticator = providers.Singleton(
        Authenticator,
        settings,
        providers.Callable(
            lambda s: (
                "" if (s.jwt_secret or s.jwt_public_key) else load_or_create_secret(s.data_dir)
            ),
            settings,
        ),
    )


async def _resolve(provider: providers.Provider[_T]) -> _T:
    # An async resource answers with an awaitable; an override (a test's object) may not.
    value: Any = provider()
    return cast("_T", await value if inspect.isawaitable(value) else value)


def _adapter_names(runtime: Runtime, container: Container) -> dict[str, str]:
    settings = runtime.settings
    chosen: dict[str, tuple[providers.Provider[Any], object, str]] = {
        "repository": (container.repository, runtime.repository, settings.repository_kind),
        "storage": (container.storage, runtime.storage, settings.storage_kind),
        "broker": (container.broker, runtime.broker, settings.broker_kind),
    }
    return {
        port: type(adapter).__name__ if provider.overridden else kind
        for port, (provider, adapter, kind) in chosen.items()
    }


@attrs.define
class Runtime:
    """The opened adapters of one process, handed to the HTTP app and the worker."""

    settings: Settings
    repository: InstructionRepository
    storage: ImageStorage
    broker: MessageBroker
    runner: RunProcessor
    authenticator: Authenticator
    webhooks: Webhooks
    _container: Container
    #: Each port's adapter by name, as ``/health`` reports it: the backend the settings
    #: select, or the class of the object a host put in its place.
    adapters: dict[str, str] = attrs.field(factory=dict)

    @classmethod
    async def open(
        cls, settings: Settings, container: Container | None = None, *, owner: bool = True
    ) -> Runtime:
        """Open every adapter the settings select and store the product catalogue.

        ``owner`` takes the DATA_DIR lock where the stack needs one; a process
        that runs no worker (one cleanup pass) opens without it. If anything
        fails, what was opened is closed again, the lock included.
        """
        container = container or Container(settings=settings)
        try:
            if owner:
                await _resolve(container.owner)
            repository = await _resolve(container.repository)
            runtime = cls(
                settings=settings,
                repository=repository,
                storage=await _resolve(container.storage),
                broker=await _resolve(container.broker),
                runner=await _resolve(container.runner),
                authenticator=await _resolve(container.authenticator),
                webhooks=await _resolve(container.webhooks),
                container=container,
            )
            runtime.adapters.update(_adapter_names(runtime, container))
            await repository.save_products(CATALOGUE, utc_now())
        except BaseException:
            result = container.shutdown_resources()
            if inspect.isawaitable(result):
                await result
            raise
        return runtime

    async def close(self) -> None:
        """Close every adapter that holds a connection."""
        result = self._container.shutdown_resources()
        if inspect.isawaitable(result):
            await result
