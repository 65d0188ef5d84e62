"""The benchmark's production stage runs on every backend the installation has."""

from __future__ import annotations

from bench import stacks


def test_every_production_backend_of_the_test_installation_is_benchmarked():
    # The test extra installs the mongo, s3 and nats extras: the production
    # stage must start all three servers, not skip as "no adapter yet".
    assert stacks.wired() == {"mongo": True, "s3": True, "nats": True}


def test_a_backend_whose_adapter_cannot_import_is_left_out(monkeypatch):
    monkeypatch.setitem(stacks.PRODUCTION_ADAPTERS, "nats", "adapters.no_such_broker")
    assert stacks.wired() == {"mongo": True, "s3": True, "nats": False}
