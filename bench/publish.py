"""Every benchmark ends the same way: its table on the console, its numbers as JSON beside it.

The JSON (git-ignored under ``bench/results/``) keeps the figures a README quotes, so a
number written down can be traced to the run that printed it.
"""

from __future__ import annotations

import json
from pathlib import Path


def publish(results: dict, report: str, results_path: Path | None) -> dict:
    """Print ``report``; write ``results`` to ``results_path`` as JSON (when given); return ``results``."""
    print(report)
    if results_path is not None:
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2, default=str))
        print(f"results written to {results_path}")
    return results
