"""Configuration from the environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from entrypoints.config import ENV_NAMES, Settings
from imagecore.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_exactly_the_variables_read() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE)
    assert sorted(listed) == sorted(ENV_NAMES)


def test_env_example_defaults_are_the_code_defaults() -> None:
    text = (ROOT / ".env.example").read_text()
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE))
    assert Settings.from_env(values) == Settings.from_env({})


def test_nothing_set_means_the_embedded_adapters() -> None:
    settings = Settings.from_env({})
    assert (settings.repository_kind, settings.storage_kind, settings.broker_kind) == (
        "sqlite",
        "filesystem",
        "memory",
    )
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 3000, Path("data"))


def test_each_production_variable_switches_one_port() -> None:
    mongo = Settings.from_env({"MONGO_URI": "mongodb://127.0.0.1:27017"})
    assert (mongo.repository_kind, mongo.storage_kind, mongo.broker_kind) == (
        "mongo",
        "filesystem",
        "memory",
    )
    s3 = Settings.from_env({"S3_ENDPOINT": "127.0.0.1:9000", "S3_USE_SSL": "true"})
    assert (s3.repository_kind, s3.storage_kind, s3.s3_use_ssl) == ("sqlite", "s3", True)
    assert Settings.from_env({"NATS_URI": "nats://127.0.0.1:4222"}).broker_kind == "nats"


@pytest.mark.parametrize(
    ("name", "value"), [("PORT", "http"), ("PORT", "-1"), ("MAX_ATTEMPTS", "2.5")]
)
def test_a_malformed_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings.from_env({name: value})


def test_the_worker_claims_one_file_ahead_per_pool_slot_unless_told() -> None:
    unset = Settings.from_env({"WORKER_CONCURRENCY": "3"})
    assert (unset.prefetch, unset.jobs_in_hand) == (3, 6)
    for value, ahead in (("0", 0), ("1", 1), (" 5 ", 5)):
        told = Settings.from_env({"WORKER_CONCURRENCY": "3", "WORKER_PREFETCH": value})
        assert (told.prefetch, told.jobs_in_hand) == (ahead, 3 + ahead)
    with pytest.raises(ValidationError, match="WORKER_PREFETCH"):
        Settings.from_env({"WORKER_PREFETCH": "-1"})
