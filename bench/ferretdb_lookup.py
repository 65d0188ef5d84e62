"""``python -m bench.ferretdb_lookup``: what one ``_id`` lookup costs on FerretDB 1.24 (SQLite).

Starts FerretDB on loopback, fills collections of 1k, 10k and 50k documents
of ~600 bytes with string ids, and times ``find_one({"_id": ...})`` for the
first document inserted, the last one, and an id that is not there, and an
``_id`` update of the first (medians of 20). The figures behind the Mongo
adapter's collections per day: see docs/decisions/0001-mongo-collections-per-day.md.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pymongo import MongoClient
from pymongo.collection import Collection

from devtools import devstack

__all__ = ["main"]

SIZES = (1_000, 10_000, 50_000)


def _median_ms(call: Callable[[], object], runs: int) -> float:
    call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _row(collection: Collection[dict[str, object]], size: int, runs: int) -> list[float]:
    collection.insert_many([{"_id": f"d{n:08d}", "pad": "x" * 600} for n in range(size)])
    first, last = "d00000000", f"d{size - 1:08d}"
    calls = [
        functools.partial(collection.find_one, {"_id": first}),
        functools.partial(collection.find_one, {"_id": last}),
        functools.partial(collection.find_one, {"_id": "missing"}),
        functools.partial(collection.update_one, {"_id": first}, {"$set": {"n": 1}}),
    ]
    return [_median_ms(call, runs) for call in calls]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ferretdb_lookup", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="documents")
    parser.add_argument("--runs", type=int, default=20, help="runs per figure (medians)")
    args = parser.parse_args(argv)
    print("| documents | first inserted | last inserted | missing | update of the first |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="imagecore-ferretdb-") as folder:
        server = devstack.start_ferretdb(Path(folder))
        try:
            client: MongoClient[dict[str, object]] = MongoClient(server.env["MONGO_URI"])
            for size in (int(s) for s in args.sizes.split(",")):
                figures = _row(client["lookup"][f"c{size}"], size, args.runs)
                print(f"| {size:,} | " + " | ".join(f"{f:.2f} ms" for f in figures) + " |")
            client.close()
        finally:
            devstack.stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
