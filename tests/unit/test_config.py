"""Configuration from the environment."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
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
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "-1"),
        ("PORT", "70000"),
        ("LOG_LEVEL", "chatty"),
        ("MAX_ATTEMPTS", "2.5"),
    ],
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


def test_a_backend_named_outright_wins_and_memory_is_one() -> None:
    settings = Settings.from_env(
        {
            "MONGO_URI": "mongodb://127.0.0.1:27017",
            "REPOSITORY_BACKEND": "memory",
            "STORAGE_BACKEND": "memory",
            "BROKER_BACKEND": "memory",
        }
    )
    assert (settings.repository_kind, settings.storage_kind, settings.broker_kind) == (
        "memory",
        "memory",
        "memory",
    )
    assert settings.sole_worker
    assert not Settings.from_env({"BROKER_BACKEND": "nats"}).sole_worker


def test_an_unknown_backend_is_refused_with_the_choices() -> None:
    with pytest.raises(ValidationError, match="STORAGE_BACKEND must be one of filesystem, s3"):
        Settings.from_env({"STORAGE_BACKEND": "gcs"})


def test_every_setting_reads_its_own_variable() -> None:
    # One variable per field, each read into its field: set each to a value of its type
    # other than the default, and find it there.
    for field in attrs.fields(Settings):
        env = field.metadata.get("env")
        if not isinstance(env, str) or field.name.endswith("_backend"):
            continue
        default = getattr(Settings(), field.name)
        raw = {bool: "true" if not default else "false", str: "changed", float: "7.5"}.get(
            type(default), "7"
        )
        if isinstance(default, tuple):
            raw = "10.0.0.1,10.0.0.2"
        if env == "PRODUCT_IDS":  # validated: key=id pairs
            raw = "images/resize=507f1f77bcf86cd799439011"
        if env == "LOG_LEVEL":  # validated: a level's name
            raw = "warning"
        value = getattr(Settings.from_env({env: raw}), field.name)
        assert value != default, (env, value)


def test_product_ids_map_catalogue_keys_to_the_old_deployments_ids() -> None:
    settings = Settings.from_env({"PRODUCT_IDS": "images/compress=507f1f77bcf86cd799439011"})
    assert settings.product_id_map == {"images/compress": "507f1f77bcf86cd799439011"}
    for wrong in ("images/compress", "images/nope=507f1f77bcf86cd799439011", "images/crop=xyz"):
        with pytest.raises(ValidationError, match="PRODUCT_IDS"):
            Settings.from_env({"PRODUCT_IDS": wrong})
