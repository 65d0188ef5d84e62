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
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from entrypoints import loop
from entrypoints.config import Settings
from entrypoints.output_name import check_named_format, with_named_format
from imagecore import __version__
from imagecore.errors import ImageCoreError, ValidationError
from imagecore.params import Parameter
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
            accepts = "; ".join(_accepts(p))
            accepts = f" ({accepts})" if accepts else ""
            sys.stdout.write(f"    {p.name:14} {p.kind.value:8} {p.description}{accepts}\n")
        for group in product.one_of:
            sys.stdout.write(f"    give at least one of: {', '.join(group)}\n")
    return 0


def _accepts(p: Parameter) -> list[str]:
    """What a parameter accepts, in words: required, its range or choices, its default."""
    said = ["required"] if p.required else []
    if p.minimum is not None and p.maximum is not None:
        said.append(f"{_shown(p.minimum)} to {_shown(p.maximum)}")
    elif p.minimum is not None:
        said.append(f"at least {_shown(p.minimum)}")
    elif p.maximum is not None:
        said.append(f"at most {_shown(p.maximum)}")
    if p.choices:
        said.append("one of " + ", ".join(p.choices))
    if p.max_length is not None:
        said.append(f"at most {_shown(p.max_length)} characters")
    if p.default is not None:
        said.append(f"default {_shown(p.default)}")
    return said


def _shown(value: object) -> str:
    """A bound or a default as it is typed on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else str(value)


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
    given = _parse_params(args.param)
    source, destination = Path(args.input), Path(args.output)
    if not source.is_file():
        raise ValidationError(f"no such input file: {source}")
    params = product.validate(with_named_format(product, given, destination))
    check_named_format(product, params, source, destination)
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
        for name in ("host", "port", "data_dir")
        if (value := getattr(args, name, None)) is not None
    }
    if "data_dir" in overrides:
        overrides["data_dir"] = Path(overrides["data_dir"])
    return attrs.evolve(settings, **overrides)


def _service_settings(args: argparse.Namespace) -> Settings:
    """The settings of a command that keeps files in DATA_DIR, which is made ready first."""
    settings = _settings(args)
    data_dir = settings.data_dir
    if data_dir.exists() and not data_dir.is_dir():
        raise ValidationError(f"DATA_DIR {data_dir} is a file, not a folder")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir):
            pass  # a file can be made there: the database, the secret, the images can
    except OSError as exc:
        raise ValidationError(
            f"DATA_DIR {data_dir} cannot be used: {exc.strerror or exc} "
            "(set DATA_DIR or --data-dir to a folder this user can write)"
        ) from None
    return settings


def _start_line(url: str, settings: Settings) -> str:
    """What a listening API says: where it is, where the console is, where tokens come from."""
    line = f"imagecore listening on {url}; the console is at {url}/"
    if settings.jwt_public_key:
        return f"{line} (sign in with a token from your identity provider)\n"
    command = "imagecore token --user YOU"
    if settings.jwt_secret:
        command += " (with the same JWT_SECRET)"
    elif settings.data_dir != Settings().data_dir:
        command += f" --data-dir {settings.data_dir}"
    return f"{line} (sign in with a token from: {command})\n"


def _serve(args: argparse.Namespace, *, run_worker: bool) -> int:
    from entrypoints.http.app import create_app  # noqa: PLC0415 - the service loads only when run
    from entrypoints.http.protocol import run  # noqa: PLC0415
    from entrypoints.logs import configure_logging  # noqa: PLC0415

    settings = _service_settings(args)
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
        listening=lambda url: sys.stderr.write(_start_line(url, settings)),
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from entrypoints.logs import configure_logging  # noqa: PLC0415
    from entrypoints.service import run_worker  # noqa: PLC0415

    settings = _service_settings(args)
    if settings.sole_worker:
        raise ValidationError("imagecore worker needs NATS_URI to receive jobs from the API")
    configure_logging(settings.log_level)
    return loop.run(run_worker(settings, signals=(signal.SIGINT, signal.SIGTERM)))


def _cleanup(args: argparse.Namespace) -> int:
    from entrypoints.service import run_cleanup  # noqa: PLC0415

    cleaned, failed = loop.run(run_cleanup(_service_settings(args)))
    _print_json({"cleaned": cleaned, "failed": failed})
    return 0


def _token(args: argparse.Namespace) -> int:
    from entrypoints.http.auth import (  # noqa: PLC0415
        load_or_create_secret,
        mint_token,
        stored_secret,
    )

    settings = _settings(args)
    if settings.jwt_public_key:
        raise ValidationError("tokens for a public key are minted by your identity provider")
    secret = settings.jwt_secret or stored_secret(settings.data_dir)
    if not secret and not args.create_secret:
        # A new secret here would sign a token that the server, which keeps its own, refuses.
        raise ValidationError(
            f"no development secret in {settings.data_dir.resolve()}: run this where the "
            "server runs, or give it the server's data folder (DATA_DIR or --data-dir) or "
            "its JWT_SECRET; --create-secret makes a new secret there for a server not "
            "started yet"
        )
    secret = secret or load_or_create_secret(settings.data_dir)
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


def _service_options(parser: argparse.ArgumentParser, *, listens: bool) -> None:
    if listens:
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
    for name, text, run, listens in (
        (
            "serve",
            "run the API and a worker in one process",
            lambda a: _serve(a, run_worker=True),
            True,
        ),
        ("api", "run the API only (needs NATS_URI)", lambda a: _serve(a, run_worker=False), True),
        ("worker", "run a worker only (needs NATS_URI)", _worker, False),
        ("cleanup", "delete stored files past retention, fail stale files", _cleanup, False),
    ):
        command = commands.add_parser(name, help=text)
        _service_options(command, listens=listens)
        command.set_defaults(run=run)
    token = commands.add_parser(
        "token", help="mint a token for a user, signed with the server's development secret"
    )
    token.add_argument(
        "--data-dir",
        help="the server's data folder, which holds its secret (env DATA_DIR, default ./data)",
    )
    token.add_argument(
        "--create-secret",
        action="store_true",
        help="make a new secret in the data folder if it has none (for a server not started yet)",
    )
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
    except BrokenPipeError:
        # The reader left (`imagecore products | head`): nothing more to say, and Python's
        # flush of stdout at exit must not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
