"""The ``imagecore`` command.

``serve`` runs the API and a worker in one process; ``api`` and ``worker`` run
the halves as separate processes (they need NATS to talk); ``cleanup`` runs
one cleanup pass; ``token`` mints a development token; ``products`` lists
the tools; ``process`` runs one product on a local file with the same
validation and processor as the service. Exit status: 0 done, 1 the image
could not be processed, 2 bad usage, parameters or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from entrypoints import loop
from entrypoints.config import Settings
from imagecore import __version__
from imagecore.errors import ImageCoreError, ValidationError
from imagecore.products import CATALOGUE, find_product

__all__ = ["main"]

EXIT_FAILED = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _products(args: argparse.Namespace) -> int:
    if args.json:
        from entrypoints.http.views import product_json  # noqa: PLC0415 - only for --json

        _print_json([product_json(p) for p in CATALOGUE])
        return 0
    for product in CATALOGUE:
        sys.stdout.write(f"{product.key:24} {product.title}: {product.description}\n")
        for p in product.parameters:
            default = "" if p.default is None else f" (default {p.default})"
            sys.stdout.write(f"    {p.name:14} {p.kind.value:8} {p.description}{default}\n")
    return 0


def _parse_params(pairs: Sequence[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValidationError(f"--param takes name=value, got {pair!r}")
        params[name.strip()] = value
    return params


def _process(args: argparse.Namespace) -> int:
    from adapters.vips.library import process_file  # noqa: PLC0415 - libvips loads only when used
    from adapters.vips.processor import configure_vips  # noqa: PLC0415

    configure_vips()  # this process is imagecore's own: the loader block list, no cache
    product = find_product(args.product)
    params = product.validate(_parse_params(args.param))
    source, destination = Path(args.input), Path(args.output)
    if not source.is_file():
        raise ValidationError(f"no such input file: {source}")
    result = process_file(source, destination, product.key, params)
    _print_json(
        {
            "product": product.key,
            "output": str(destination),
            "format": result.format,
            "size": result.size,
            "width": result.width,
            "height": result.height,
            "input": {
                "format": result.input.format,
                "width": result.input.width,
                "height": result.input.height,
                "size": source.stat().st_size,
            },
            "metadata": result.metadata,
        }
    )
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    import attrs  # noqa: PLC0415 - only the service commands need it

    settings = Settings.from_env()
    overrides = {
        name: value
        for name, value in (("host", args.host), ("port", args.port), ("data_dir", args.data_dir))
        if value is not None
    }
    if "data_dir" in overrides:
        overrides["data_dir"] = Path(overrides["data_dir"])
    return attrs.evolve(settings, **overrides)


def _serve(args: argparse.Namespace, *, run_worker: bool) -> int:
    from entrypoints.http.app import create_app  # noqa: PLC0415 - the service loads only when run
    from entrypoints.http.protocol import run  # noqa: PLC0415
    from entrypoints.logs import configure_logging  # noqa: PLC0415

    settings = _settings(args)
    if not run_worker and settings.sole_worker:
        raise ValidationError(
            "imagecore api needs NATS_URI: without it nothing would process files"
        )
    configure_logging(settings.log_level)
    run(
        create_app(settings, run_worker=run_worker),
        host=settings.host,
        port=settings.port,
        loop=loop.new_event_loop(),
        listening=lambda url: sys.stderr.write(f"imagecore listening on {url}\n"),
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from entrypoints.logs import configure_logging  # noqa: PLC0415
    from entrypoints.service import run_worker  # noqa: PLC0415

    settings = _settings(args)
    if settings.sole_worker:
        raise ValidationError("imagecore worker needs NATS_URI to receive jobs from the API")
    configure_logging(settings.log_level)
    return loop.run(run_worker(settings, signals=(signal.SIGINT, signal.SIGTERM)))


def _cleanup(args: argparse.Namespace) -> int:
    from entrypoints.service import run_cleanup  # noqa: PLC0415

    cleaned, failed = loop.run(run_cleanup(_settings(args)))
    _print_json({"cleaned": cleaned, "failed": failed})
    return 0


def _token(args: argparse.Namespace) -> int:
    from entrypoints.http.auth import load_or_create_secret, mint_token  # noqa: PLC0415

    settings = _settings(args)
    if settings.jwt_public_key:
        raise ValidationError("tokens for a public key are minted by your identity provider")
    secret = settings.jwt_secret or load_or_create_secret(settings.data_dir)
    token = mint_token(
        secret,
        args.user,
        admin=args.admin,
        ttl_seconds=args.ttl,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        key_id=settings.jwt_key_id,
    )
    sys.stdout.write(token + "\n")
    return 0


def _service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (env PORT, default 3000)")
    parser.add_argument(
        "--data-dir", help="folder for the embedded data (env DATA_DIR, default ./data)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagecore", description="Self-hosted, job-based image processing on libvips."
    )
    parser.add_argument("--version", action="version", version=f"imagecore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    products = commands.add_parser("products", help="list the tools and their parameters")
    products.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    products.set_defaults(run=_products)
    process = commands.add_parser("process", help="run one product on a local file")
    process.add_argument("product", help="product key (images/resize) or id")
    process.add_argument("input", help="the image to read")
    process.add_argument("output", help="where to write the result")
    process.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a product parameter; repeat for several",
    )
    process.set_defaults(run=_process)
    for name, text, run in (
        ("serve", "run the API and a worker in one process", lambda a: _serve(a, run_worker=True)),
        ("api", "run the API only (needs NATS_URI)", lambda a: _serve(a, run_worker=False)),
        ("worker", "run a worker only (needs NATS_URI)", _worker),
        ("cleanup", "delete stored files past retention, fail stale files", _cleanup),
    ):
        command = commands.add_parser(name, help=text)
        _service_options(command)
        command.set_defaults(run=run)
    token = commands.add_parser("token", help="mint a token for a user (development secret)")
    _service_options(token)
    token.add_argument("--user", required=True, help="the user id (the token's sub)")
    token.add_argument("--admin", action="store_true", help="allow the admin routes")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="seconds of validity")
    token.set_defaults(run=_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    # The command's process is imagecore's own: libvips (loaded later, if at all) prints
    # none of its warnings about damaged files; the pool's children inherit the setting.
    os.environ.setdefault("VIPS_WARNING", "1")
    args = _parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except ValidationError as exc:
        sys.stderr.write(f"imagecore: {exc.message}\n")
        return EXIT_USAGE
    except ImageCoreError as exc:
        sys.stderr.write(f"imagecore: {exc.code}: {exc.message}\n")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
