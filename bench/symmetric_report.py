"""The symmetric workload's section of BENCHMARKS.md (`bench.symmetric`'s results)."""

from __future__ import annotations

from typing import Any

__all__ = ["round_ratios", "symmetric_section"]


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def round_ratios(runs: dict[str, list[dict[str, Any]]]) -> list[tuple[float, float]]:
    """imagecore / thumbor in each round: (wall clock, per CPU-second)."""
    pairs = zip(runs.get("imagecore", []), runs.get("thumbor", []), strict=False)
    return [
        (
            ours["images_per_second"] / peer["images_per_second"],
            ours["images_per_cpu_second"] / peer["images_per_cpu_second"],
        )
        for ours, peer in pairs
        if peer["images_per_second"] and peer["images_per_cpu_second"]
    ]


def _latency(subject: dict[str, Any]) -> str:
    return " / ".join(f"{subject[q] * 1000:.0f}" for q in ("p50", "p95", "p99"))


def _asymmetric(document: dict[str, Any]) -> str:
    """Section 2's imagecore / thumbor for W1 and W2, if this run measured them."""
    summary = document.get("e2e", {}).get("summary", {})
    parts = []
    for key in ("W1", "W2"):
        row = summary.get(key)
        if row:
            ours, peer = row["imagecore"], row["thumbor"]
            parts.append(
                f"{key} {ours['images_per_second'] / peer['images_per_second']:.2f}x / "
                f"{ours['images_per_cpu_second'] / peer['images_per_cpu_second']:.2f}x"
            )
    if not parts:
        return ""
    return (
        " In the same run, section 2's asymmetric rows (thumbor reading its own disk), "
        "wall clock / per CPU-second: " + ", ".join(parts) + "."
    )


def symmetric_section(document: dict[str, Any]) -> list[str]:
    """The section's lines, or none if the stage did not run."""
    result = document.get("symmetric", {})
    summary = result.get("summary")
    if not summary:
        return []
    rows = []
    cpu_notes = []
    for key, row in summary.items():
        ours, peer = row["imagecore"], row["thumbor"]
        per_round = round_ratios(result["runs"][key])
        rows.append(
            _row(
                key,
                f"{ours['images_per_second']:.1f} ({ours['images_per_cpu_second']:.1f})",
                f"{peer['images_per_second']:.1f} ({peer['images_per_cpu_second']:.1f})",
                f"**{row['ratio_wall']:.2f}** / **{row['ratio_cpu']:.2f}**",
                ", ".join(f"{w:.2f} / {c:.2f}" for w, c in per_round),
                _latency(ours),
                _latency(peer),
                f"{ours['mean_output_bytes'] / 1024:.1f} / {peer['mean_output_bytes'] / 1024:.1f}",
            )
        )
        serve = ours["root_cpu_ms_per_image"]
        cpu_notes.append(
            f"{key}: imagecore {ours['cpu_ms_per_image']:.1f} ms (serve process {serve:.1f}, "
            f"pool {ours['cpu_ms_per_image'] - serve:.1f}), thumbor "
            f"{peer['cpu_ms_per_image']:.1f} ms; the client {ours['client_cpu_ms_per_image']:.1f} "
            f"ms driving imagecore, {peer['client_cpu_ms_per_image']:.1f} ms driving thumbor"
        )
    rounds = len(next(iter(result["runs"].values()))["imagecore"])
    return [
        "### Both services take the image by upload (symmetric)",
        "",
        (
            "Section 2 asks thumbor for a file on its own disk. Here each service is used as its "
            "clients use it, on the same images: thumbor (two servers, one process each, Pillow "
            "engine) with its upload module and file storage, `POST /image` with the photo as "
            "the body, then `GET` of the derived size by the id in `Location` (no result "
            "storage: every GET is processed); imagecore (`imagecore serve`, 2 worker "
            "processes) upload, DONE on the event stream, download (`bench/symmetric.py`). "
            f"{result['concurrency']} images in flight on each side, the same client "
            "connection; images per second wall clock (per CPU-second of the servers' "
            "processes), latency from the first byte of the upload to the last of the result, "
            f"in ms. Medians of {rounds} rounds; the two subjects alternate and swap which goes "
            "first every round." + _asymmetric(document)
        ),
        "",
        _row(
            "",
            "imagecore",
            "thumbor",
            "imagecore / thumbor: wall clock / per CPU-second",
            "each round",
            "imagecore p50/p95/p99",
            "thumbor p50/p95/p99",
            "output KiB: ours / thumbor",
        ),
        _row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"),
        *rows,
        "",
        "CPU per image, servers only: " + "; ".join(cpu_notes) + ".",
        "",
    ]
