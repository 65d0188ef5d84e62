"""The ``imagecore`` command.

``products`` lists the tools; ``process`` runs one product on a local file with
the same validation and processor as the service. Exit status: 0 done,
1 the image could not be processed, 2 bad usage or parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from imagecore.errors import ImageCoreError, ValidationError
from imagecore.ports import ProcessingRequest
from imagecore.products import CATALOGUE, find_product

__all__ = ["main"]

EXIT_FAILED = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _products(args: argparse.Namespace) -> int:
    if args.json:
        _print_json([p.to_dict() for p in CATALOGUE])
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
    from adapters.vips import VipsImageProcessor  # noqa: PLC0415 - libvips loads only when used

    product = find_product(args.product)
    params = product.validate(_parse_params(args.param))
    source, destination = Path(args.input), Path(args.output)
    if not source.is_file():
        raise ValidationError(f"no such input file: {source}")
    processor = VipsImageProcessor()
    result = processor.process(
        ProcessingRequest(
            product_key=product.key,
            params=params,
            source=source,
            destination=destination,
            max_pixels=product.limits.max_pixels,
            max_frames=product.limits.max_frames,
        )
    )
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagecore", description="Self-hosted, job-based image processing on libvips."
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
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
