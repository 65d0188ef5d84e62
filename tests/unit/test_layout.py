"""The README's map of the code is the code's layout, and modules stay short or say why.

The map is the code block under "## How it is built": each line starting at
the margin names a folder, the lines under it what the folder holds.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: Folders whose every module and package the map must name.
MAPPED = ("src/imagecore", "src/adapters", "src/entrypoints", "devtools")
#: Past this many lines a module says in its docstring why it is one module.
LONG = 400
WHY_LONG = "Why one module:"


def _map() -> dict[str, str]:
    """Each folder of the map with the text of the lines under it."""
    text = README.read_text()
    start = text.index("## How it is built")
    opened = text.index("```\n", start) + 4
    block = text[opened : text.index("```\n", opened)]
    folders: dict[str, str] = {}
    current = ""
    for line in block.splitlines():
        if line and not line[0].isspace():
            current = line.split()[0]
            folders[current] = line[len(current) :]
        elif current:
            folders[current] += "\n" + line
    return folders


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if p.name != "__init__.py")


def test_every_folder_of_the_map_exists() -> None:
    folders = _map()
    assert set(MAPPED) <= {f.rstrip("/") for f in folders}
    for folder in folders:
        assert (ROOT / folder).is_dir(), folder


@pytest.mark.parametrize("folder", MAPPED)
def test_the_map_names_every_module_and_package(folder: str) -> None:
    said = _map()[folder + "/"]
    for module in _modules(ROOT / folder):
        # Named as a file (``io.py``), or in a list that ends in one (``geometry, compress``).
        named = re.search(rf"\b{module.stem}\.py\b|\b{module.stem}\b[\w, ]*\.py\b", said)
        assert named, f"{module} is not in the README's map"
    for package in (p.parent for p in (ROOT / folder).rglob("__init__.py")):
        if package != ROOT / folder:
            assert f"{package.name}/" in said, f"{package} is not in the README's map"


@pytest.mark.parametrize("folder", MAPPED)
def test_every_module_the_map_names_exists(folder: str) -> None:
    said = _map()[folder + "/"]
    present = {p.name for p in _modules(ROOT / folder)}
    for named in re.findall(r"\b(\w+\.py)\b", said):
        assert named in present, f"the README's map names {folder}/.../{named}, which is gone"


def test_a_long_module_says_why_it_is_one_module() -> None:
    long = []
    for folder in MAPPED:
        for module in _modules(ROOT / folder):
            source = module.read_text()
            if source.count("\n") > LONG:
                docstring = ast.get_docstring(ast.parse(source)) or ""
                if WHY_LONG not in docstring:
                    long.append(f"{module.relative_to(ROOT)} ({source.count(chr(10))} lines)")
    assert long == [], f"over {LONG} lines without {WHY_LONG!r} in the docstring: {long}"
