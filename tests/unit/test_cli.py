"""`imagecore process` on the shared corpus: every product works, hostile files fail cleanly."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoints.cli import EXIT_FAILED, EXIT_USAGE, main
from imagecore.products import CATALOGUE

FOLDERS = ("photos", "large", "png", "webp", "misc")
#: One call of every product; the CLI takes strings as a form or a shell would.
PARAMS: dict[str, list[str]] = {
    "images/compress": [],
    "images/convert": ["format=webp"],
    "images/resize": ["width=300", "height=200", "fit=cover"],
    "images/crop": ["aspect_ratio=1:1"],
    "images/rotate": ["angle=270", "flip=vertical"],
    "images/thumbnail": [],
    "images/strip-metadata": [],
    "images/metadata": [],
    "images/watermark": ["text=imagecore", "position=tile"],
}
#: The corpus files libvips here cannot read at all (checked in test_vips_processor).
UNREADABLE = {"multipage_rgb.tif"}


def corpus_files(corpus: Path) -> list[Path]:
    return sorted(p for f in FOLDERS for p in (corpus / f).iterdir() if p.name not in UNREADABLE)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_calls_every_product() -> None:
    assert set(PARAMS) == {p.key for p in CATALOGUE}


@pytest.mark.slow
@pytest.mark.parametrize("product", sorted(PARAMS))
def test_every_product_works_on_every_corpus_file(
    product: str, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = corpus_files(corpus)
    if product == "images/compress":
        # Its quality search takes seconds per image: one file of each folder here
        # (test_vips_processor compresses all eight photos).
        files = [next(f for f in files if f.parent.name == folder) for folder in FOLDERS]
    assert len(files) >= len(FOLDERS)
    for source in files:
        out = tmp_path / f"{source.stem}.out"
        params = [a for p in PARAMS[product] for a in ("-p", p)]
        code, printed, err = run(capsys, "process", product, str(source), str(out), *params)
        assert code == 0, f"{source.name}: {err}"
        summary = json.loads(printed)
        assert summary["size"] == out.stat().st_size > 0
        if product == "images/compress":
            assert summary["size"] <= source.stat().st_size, source.name


def test_hostile_edge_files_exit_non_zero_with_a_clear_message(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = {"broken.png", "decompression_bomb.gif", "hopper.heif"}
    for name in sorted(hostile):
        code, printed, err = run(
            capsys, "process", "images/thumbnail", str(corpus / "edge" / name), str(tmp_path / "x")
        )
        assert code == EXIT_FAILED, name
        assert printed == ""
        assert err.startswith("imagecore: ")
        assert "Traceback" not in err
    for source in sorted((corpus / "edge").iterdir()):
        if source.name not in hostile:
            code, _, err = run(
                capsys, "process", "images/thumbnail", str(source), str(tmp_path / "ok")
            )
            assert code == 0, f"{source.name}: {err}"


def test_bad_usage_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.jpg")
    code, _, err = run(capsys, "process", "images/resize", missing, "o", "-p", "width=10")
    assert (code, "no such input file" in err) == (EXIT_USAGE, True)
    code, _, err = run(capsys, "process", "images/resize", missing, "o", "-p", "width")
    assert (code, "name=value" in err) == (EXIT_USAGE, True)
    code, _, err = run(capsys, "process", "images/blur", missing, "o")
    assert (code, "images/resize" in err) == (EXIT_USAGE, True)


def test_products_lists_the_catalogue_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, printed, _ = run(capsys, "products", "--json")
    assert code == 0
    assert [p["key"] for p in json.loads(printed)] == [p.key for p in CATALOGUE]


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("imagecore")
    result = subprocess.run(  # noqa: S603 - our own console script
        [str(script), "products"], capture_output=True, text=True, check=True
    )
    assert "images/thumbnail" in result.stdout


def test_a_taken_port_exits_2_before_saying_it_listens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", "cli-test-secret-0123456789-0123456789")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(
            capsys, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")
        )
    assert code == EXIT_USAGE
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "listening" not in err
    assert "Traceback" not in err
