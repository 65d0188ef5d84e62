"""The command line: every product on the corpus, and each mistake refused in one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from entrypoints.cli import EXIT_FAILED, EXIT_USAGE, main
from entrypoints.http.auth import load_or_create_secret
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


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1"])
def test_a_port_out_of_range_exits_2_in_one_line(port: str, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("imagecore")
    result = subprocess.run(  # noqa: S603 - our own console script; it must not start serving
        [str(script), "serve", "--port", port, "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_USAGE
    assert result.stderr == f"imagecore: PORT (--port) must be between 1 and 65535, got {port}\n"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("where", ["a file", "beneath a file"])
def test_a_data_dir_that_cannot_be_a_folder_exits_2_in_one_line(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    data_dir = blocker if where == "a file" else blocker / "data"
    for command in ("serve", "worker", "cleanup"):
        code, _, err = run(capsys, command, "--data-dir", str(data_dir))
        assert code == EXIT_USAGE, command
        assert err.startswith(f"imagecore: DATA_DIR {data_dir} "), err
        assert err.count("\n") == 1, err
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder all the same")
def test_a_read_only_data_dir_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o500)
    code, _, err = run(capsys, "serve", "--data-dir", str(data_dir))
    assert code == EXIT_USAGE
    assert err.startswith(f"imagecore: DATA_DIR {data_dir} cannot be used: Permission denied")


def test_an_unknown_log_level_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    code, _, err = run(capsys, "serve", "--data-dir", str(tmp_path / "data"))
    assert code == EXIT_USAGE
    assert err == (
        "imagecore: LOG_LEVEL must be one of debug, info, warning, error, critical, got 'chatty'\n"
    )


def test_token_makes_no_secret_of_its_own_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # another folder than the server's: no ./data here
    code, printed, err = run(capsys, "token", "--user", "alice")
    assert (code, printed) == (EXIT_USAGE, "")
    assert err.startswith(f"imagecore: no development secret in {tmp_path / 'data'}: ")
    assert "--data-dir" in err
    assert not (tmp_path / "data").exists()

    code, made, _ = run(capsys, "token", "--user", "alice", "--create-secret")
    assert code == 0
    secret = (tmp_path / "data" / "jwt-secret").read_text()
    code, again, _ = run(capsys, "token", "--user", "alice")
    assert code == 0
    for token in (made, again):
        assert jwt.decode(token.strip(), secret, algorithms=["HS256"])["sub"] == "alice"


def test_token_reads_the_servers_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    server_data = tmp_path / "server-data"
    secret = load_or_create_secret(server_data)
    monkeypatch.chdir(tmp_path)
    code, token, _ = run(capsys, "token", "--user", "bob", "--data-dir", str(server_data))
    assert code == 0
    assert jwt.decode(token.strip(), secret, algorithms=["HS256"])["sub"] == "bob"


def test_token_help_offers_nothing_to_listen_on(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["token", "--help"])
    shown = capsys.readouterr().out
    assert "--data-dir" in shown
    assert "listen" not in shown
    assert "--port" not in shown


def test_products_shows_each_parameters_range_and_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, printed, _ = run(capsys, "products")
    assert code == 0
    resize = printed.split("images/resize", 1)[1].split("\nimages/", 1)[0]
    assert "Target width in pixels. (1 to 16,384)" in resize
    assert "(one of inside, outside, cover, contain, fill; default inside)" in resize
    assert "(one of jpeg, png, webp, avif, gif, tiff)" in resize
    assert "give at least one of: width, height" in resize
    convert = printed.split("images/convert", 1)[1].split("\nimages/", 1)[0]
    assert "(required; one of jpeg, png, webp, avif, gif, tiff)" in convert


def test_products_piped_into_head_ends_quietly() -> None:
    script = Path(sys.executable).with_name("imagecore")
    result = subprocess.run(  # noqa: S603 - our own console script, read by head
        ["bash", "-c", f"'{script}' products | head -n 1"],  # noqa: S607 - bash from PATH
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("images/compress")
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("product", "name", "params", "magic"),
    [
        ("images/resize", "kite.webp", ["width=64"], (8, b"WEBP")),
        ("images/thumbnail", "kite.png", [], (1, b"PNG")),
        ("images/convert", "kite.avif", [], (4, b"ftypavif")),
        ("images/resize", "kite.WEBP", ["width=64", "format=webp"], (8, b"WEBP")),
    ],
)
def test_process_writes_the_format_its_output_name_names(
    product: str,
    name: str,
    params: list[str],
    magic: tuple[int, bytes],
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / name
    flags = [a for p in params for a in ("-p", p)]
    code, printed, err = run(
        capsys, "process", product, str(corpus / "photos" / "kite-2560x1600.jpg"), str(out), *flags
    )
    assert code == 0, err
    offset, expected = magic
    assert out.read_bytes()[offset : offset + len(expected)] == expected
    assert json.loads(printed)["format"] == name.rsplit(".", 1)[1].lower()


@pytest.mark.parametrize(
    ("product", "name", "params", "said"),
    [
        (
            "images/resize",
            "kite.jpg",
            ["width=64", "format=webp"],
            "kite.jpg names JPEG, but format=webp asks for WebP: name it .webp, or drop -p format",
        ),
        (
            "images/compress",
            "kite.webp",
            [],
            (
                "kite.webp names WebP, but images/compress keeps the input's format, JPEG: "
                "name it .jpg"
            ),
        ),
        (
            "images/metadata",
            "kite.png",
            [],
            "kite.png names PNG, but images/metadata writes JSON: name it .json",
        ),
        (
            "images/resize",
            "kite.heic",
            ["width=64"],
            (
                "kite.heic names HEIF, which imagecore does not write: "
                "use one of .jpg, .png, .webp, .avif, .gif, .tiff"
            ),
        ),
    ],
)
def test_process_refuses_an_output_name_of_another_format(
    product: str,
    name: str,
    params: list[str],
    said: str,
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / name
    flags = [a for p in params for a in ("-p", p)]
    code, printed, err = run(
        capsys, "process", product, str(corpus / "photos" / "kite-2560x1600.jpg"), str(out), *flags
    )
    assert (code, printed, err) == (EXIT_USAGE, "", f"imagecore: {said}\n")
    assert not out.exists()


def test_serve_says_where_the_console_and_tokens_are_once_it_listens(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_dir = tmp_path / "elsewhere"
    env = {k: v for k, v in os.environ.items() if k not in {"JWT_SECRET", "JWT_PUBLIC_KEY"}}
    script = Path(sys.executable).with_name("imagecore")
    args = [str(script), "serve", "--port", str(port), "--data-dir", str(data_dir)]
    with subprocess.Popen(  # noqa: S603 - our own console script
        args, env=env, stderr=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stderr is not None
            first = server.stderr.readline()  # the first line says it is up, or it failed
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    url = f"http://127.0.0.1:{port}"
    assert first == (
        f"imagecore listening on {url}; the console is at {url}/ (sign in with a token "
        f"from: imagecore token --user YOU --data-dir {data_dir})\n"
    )
