"""Compress each photo of the shared corpus and print a Markdown table of the results.

Usage: ``python -m bench.compress_report [--target-ssim 0.98] [FILES...]``
(default: the 8 photos of ``../shared/corpus/photos``). SSIM is the
processor's own measure (Gaussian window, mean over the RGB channels).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from adapters.vips.processor import VipsImageProcessor
from bench.corpus import CORPUS
from imagecore.ports import ProcessingRequest
from imagecore.products import find_product


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--target-ssim", type=float, default=0.98)
    args = parser.parse_args()
    files = args.files or sorted((CORPUS / "photos").glob("*.jpg"))
    product = find_product("images/compress")
    params = product.validate({"target_ssim": args.target_ssim})
    processor = VipsImageProcessor()
    print(
        "| photo | input bytes | output bytes | ratio | quality | chroma 4:2:0 | SSIM | seconds |"
    )
    print("| --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: |")
    total_in = total_out = 0
    with tempfile.TemporaryDirectory(prefix="compress-report-") as folder:
        for path in files:
            started = time.perf_counter()
            result = processor.process(
                ProcessingRequest(
                    product.key,
                    params,
                    path,
                    Path(folder) / path.name,
                    product.limits.max_pixels,
                    product.limits.max_frames,
                )
            )
            seconds = time.perf_counter() - started
            meta = result.metadata
            subsampled = {True: "yes", False: "no"}.get(meta.get("chroma_subsampling"), "-")
            total_in += meta["input_size"]
            total_out += result.size
            print(
                f"| {path.name} | {meta['input_size']:,} | {result.size:,} | {meta['ratio']:.3f} "
                f"| {meta['quality']} | {subsampled} | {meta['ssim']:.4f} | {seconds:.1f} |"
            )
    print(f"| **total** | {total_in:,} | {total_out:,} | {total_out / total_in:.3f} | | | | |")


if __name__ == "__main__":
    main()
