"""The Pythons the package says it supports are the ones `make test` runs the unit tests on."""

import ast
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).parents[2]
PREFIX = "Programming Language :: Python :: "


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _noxfile_constant(name: str) -> object:
    # Read, not imported: nox is installed beside the sessions, not in them.
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(target, "id", None) for target in node.targets] == [name]
    ]
    return ast.literal_eval(value)


def _classified() -> set[str]:
    classifiers = _project()["classifiers"]
    assert isinstance(classifiers, list)
    return {
        version
        for classifier in classifiers
        if (version := classifier.removeprefix(PREFIX)).count(".") == 1
    }


def test_the_classified_pythons_are_the_ones_nox_runs_the_unit_tests_on():
    newer = _noxfile_constant("NEWER_PYTHONS")
    assert isinstance(newer, tuple)
    assert _classified() == {_noxfile_constant("PYTHON"), *newer}


def test_requires_python_admits_every_classified_python():
    allowed = SpecifierSet(str(_project()["requires-python"]))
    assert [version for version in sorted(_classified()) if f"{version}.0" not in allowed] == []
