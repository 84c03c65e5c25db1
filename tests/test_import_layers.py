"""Which package may import which (docs/architecture.md), checked on every import statement of the packages.

Arrows point one way: labels <- dicom_io <- models; qc imports only labels; results imports labels,
dicom_io and qc; review imports those and results; dataset (the curated export) imports those and
review; pipeline imports everything. Torch and the libraries built on it are imported only under
``models/``, Apache Beam only under ``pipeline/``.
``review/slicer/`` (the 3D Slicer module) is part of review; ``sr_templates`` is data any package may
read; ``bench/`` and ``tests/`` are not checked, and no package may import them.

Every ``import`` and ``from ... import`` counts, wherever it is: at module level, inside a function
(the lazy imports that keep start-up fast still load the package when they run), and under ``if
TYPE_CHECKING:``. A type-hint-only import loads nothing at run time, but it still ties the package to
the other one's types, so it counts too; the exceptions are named in ``TYPE_HINT_ONLY``, each with
its reason. Imports built from strings at run time (``importlib``, source plugins) are not seen.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT

OURS_CHECKED = ("labels", "dicom_io", "models", "qc", "results", "review", "dataset", "pipeline")
ALLOWED = {
    "labels": set(),
    "dicom_io": {"labels"},
    "models": {"labels", "dicom_io"},
    "qc": {"labels"},
    "results": {"labels", "dicom_io", "qc"},
    "review": {"labels", "dicom_io", "qc", "results"},
    "dataset": {"labels", "dicom_io", "qc", "results", "review"},
    "pipeline": {"labels", "dicom_io", "models", "qc", "results", "review", "dataset"},
}
DATA = {"sr_templates"}  # read by any package (importlib.resources)
NEVER = {"bench", "tests"}  # no package imports these
TORCH = {"torch", "torchvision", "nnunetv2", "monai", "totalsegmentator", "moosez"}  # only in models/
BEAM = {"apache_beam"}  # only in pipeline/
# (file, imported package) allowed under ``if TYPE_CHECKING:`` only
TYPE_HINT_ONLY = {
    ("dicom_io/sr_writer.py", "qc"),  # the SR writer's signature names qc.results.BoneResult; dicom_io never loads qc
}


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # absolute dotted name; a relative import is resolved inside the file's own package
    type_hint_only: bool  # under ``if TYPE_CHECKING:``


def imports(source: str, path: str) -> list[Import]:
    """Every import statement of ``source`` (the file at ``path``, relative to the repository root)."""
    tree = ast.parse(source, filename=path)
    hinted = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
              for statement in block.body for node in ast.walk(statement)}
    package = path.split("/")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name, id(node) in hinted) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "") if node.level == 0 else ".".join(filter(None, (package, node.module)))
            found.append(Import(node.lineno, module, id(node) in hinted))
    return sorted(found, key=lambda i: i.line)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def forbidden(source: str, path: str) -> list[str]:
    """``path:line: package -> package (module)`` for every import of ``source`` the rules forbid."""
    layer = path.split("/")[0]
    problems = []
    for imp in imports(source, path):
        top = imp.module.split(".")[0]
        where = f"{path}:{imp.line}: {layer} -> {top} ({imp.module})"
        if top in TORCH and layer != "models":
            problems.append(f"{where}: torch and the libraries built on it are imported only in models/")
        elif top in BEAM and layer != "pipeline":
            problems.append(f"{where}: Apache Beam is imported only in pipeline/")
        elif top in NEVER:
            problems.append(f"{where}: packages do not import {top}/")
        elif top in ALLOWED and top != layer and top not in ALLOWED[layer]:
            if not (imp.type_hint_only and (path, top) in TYPE_HINT_ONLY):
                allowed = ", ".join(sorted(ALLOWED[layer] | DATA)) or "nothing of ours"
                problems.append(f"{where}: {layer} may import only {allowed}")
    return problems


def package_files() -> list[Path]:
    return sorted(p for package in OURS_CHECKED for p in (REPO_ROOT / package).rglob("*.py"))


def test_every_import_follows_the_layers():
    files = package_files()
    assert {p.relative_to(REPO_ROOT).parts[0] for p in files} == set(OURS_CHECKED), "a package has no .py file?"
    assert any("slicer" in p.parts for p in files), "review/slicer/ must be checked as part of review"
    problems = [problem for p in files
                for problem in forbidden(p.read_text(encoding="utf-8"), p.relative_to(REPO_ROOT).as_posix())]
    assert not problems, "imports against the layer rules (docs/architecture.md):\n" + "\n".join(problems)


def test_the_checker_catches_back_imports():
    """The rules above are applied: a back-import, hidden or not, is reported with file, line and arrow."""
    source = """\
from __future__ import annotations
from typing import TYPE_CHECKING

from pipeline.stage2 import x
from . import neighbour
from qc.results import Member

if TYPE_CHECKING:
    import models.base


def lazy():
    import apache_beam as beam
    import torch
    from tests.support import helper
"""
    assert forbidden(source, "review/x.py") == [
        "review/x.py:4: review -> pipeline (pipeline.stage2): review may import only dicom_io, labels, qc, results, "
        "sr_templates",
        "review/x.py:9: review -> models (models.base): review may import only dicom_io, labels, qc, results, sr_templates",
        "review/x.py:13: review -> apache_beam (apache_beam): Apache Beam is imported only in pipeline/",
        "review/x.py:14: review -> torch (torch): torch and the libraries built on it are imported only in models/",
        "review/x.py:15: review -> tests (tests.support): packages do not import tests/",
    ]
    assert [i.module for i in imports(source, "review/x.py") if i.type_hint_only] == ["models.base"]
    assert forbidden("import models\n", "qc/metrics.py") == [
        "qc/metrics.py:1: qc -> models (models): qc may import only labels, sr_templates"]
    assert forbidden("from pipeline import cli\nimport torch\n", "models/x.py") == [
        "models/x.py:1: models -> pipeline (pipeline): models may import only dicom_io, labels, sr_templates"]
    # a type-hint-only import is let through only where it is named, and only under TYPE_CHECKING
    hinted = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from qc.results import BoneResult\n"
    assert forbidden(hinted, "dicom_io/sr_writer.py") == []
    assert forbidden(hinted, "dicom_io/seg_writer.py") != []
    assert forbidden("from qc.results import BoneResult\n", "dicom_io/sr_writer.py") != []
