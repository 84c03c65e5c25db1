"""``bonehub review`` runs where Apache Beam cannot be imported: Stage 3 reads stored results, it runs no job.

Each command runs in a fresh interpreter whose import system refuses ``apache_beam`` (a meta-path
finder placed first) and that exits with status 3 if anything even tried to import it, so a
swallowed ImportError is caught too. The stored results are the session's real sample run
(``tests/review/conftest.py``): worklist and export read its QC tables, manifest, SEGs and CT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from results.qc_shards import read_qc_table
from tests.conftest import REPO_ROOT

NO_BEAM = """
import atexit, os, sys

assert "apache_beam" not in sys.modules, "apache_beam was loaded before the test's guard"
TRIED = []


class NoBeam:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] == "apache_beam":
            TRIED.append(name)
            raise ImportError(f"import of {name} refused: this must run without Apache Beam")
        return None


def report():
    if TRIED:
        sys.stderr.write(f"tried to import Apache Beam: {TRIED}\\n")
        sys.stderr.flush()
        os._exit(3)


sys.meta_path.insert(0, NoBeam)
atexit.register(report)
"""
BONEHUB = "from pipeline.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def without_beam(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_BEAM + code, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_the_guard_refuses_beam():
    """The check itself works: a Stage 2 job module cannot load, and the attempt is reported."""
    done = without_beam("import pipeline.qc_job\n")
    assert done.returncode != 0 and "import of apache_beam refused" in done.stderr, done.stderr


def test_review_help_without_beam():
    done = without_beam(BONEHUB, "review", "worklist", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: bonehub review worklist" in done.stdout


def test_review_worklist_and_export_without_beam(reviewed_sample):
    run = reviewed_sample
    export = run.root / "export"
    done = without_beam(BONEHUB, "review", "worklist", *run.place_args, "--to", str(export))
    assert done.returncode == 0, done.stderr
    items = json.loads((export / "worklist.json").read_text())["items"]
    table = read_qc_table(str(run.root / "qc"), "qc_table")
    assert [i["bone"] for i in items] == list(table[table.status == "review"].sort_values("score", kind="stable").bone)

    done = without_beam(BONEHUB, "review", "export", *run.place_args, "--to", str(export), "--top", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    first = items[0]
    record = json.loads((export / first["series_uid"] / first["bone"] / "item.json").read_text())
    assert record["bone"] == first["bone"] and record["series_uid"] == first["series_uid"]
