"""Download model weights into the image at build time (``--build-arg BAKE_WEIGHTS=...``).

Items are ``totalsegmentator:<task>`` (TotalSegmentator's download names of the tasks our adapter
runs: ``total``, ``total_fast``) and ``moose:<model>`` (``models.moose.MOOSE_MODELS``), separated by
spaces or commas. Licensed tasks (``appendicular_bones``) are refused: a licence must not end up in a
pushed image; mount those weights at run time instead. Each item runs the tool's own downloader:
``totalseg_download_weights -t TASK`` into ``DEST/totalsegmentator`` (the image's
``TOTALSEG_WEIGHTS_PATH``) and ``moosez -md MODEL -md-out DEST/moose`` (use the source as
``moose:MODEL?models_dir=DEST/moose``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


class BakeWeightsError(ValueError):
    """An item that cannot be baked, with the reason."""


@dataclass(frozen=True)
class Download:
    """One downloader call: its command line and the environment it needs."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def bakeable() -> dict[str, set[str]]:
    """The items our adapters can use, per tool: the single place they are defined is the adapters."""
    from models.moose import MOOSE_MODELS
    from models.totalsegmentator import TASKS

    return {
        "totalsegmentator": {task.download_name for task in TASKS.values() if not task.licence},
        "moose": set(MOOSE_MODELS),
    }


def plan(items: str, dest: Path, allowed: dict[str, set[str]] | None = None) -> list[Download]:
    """The downloads that bake ``items`` under ``dest``; raises ``BakeWeightsError`` naming a bad item."""
    allowed = bakeable() if allowed is None else allowed
    downloads = []
    for item in filter(None, re.split(r"[\s,]+", items.strip())):
        tool, _, name = item.partition(":")
        if tool not in allowed:
            raise BakeWeightsError(f"{item!r}: tool must be one of {sorted(allowed)} (as tool:name)")
        if name not in allowed[tool]:
            raise BakeWeightsError(f"{item!r}: {tool} weights that can be baked are {sorted(allowed[tool])}")
        if tool == "totalsegmentator":
            target = dest / "totalsegmentator"
            downloads.append(Download(("totalseg_download_weights", "-t", name), {"TOTALSEG_WEIGHTS_PATH": str(target)}))
        else:
            downloads.append(Download(("moosez", "-md", name, "-md-out", str(dest / "moose"))))
    return downloads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("items", nargs="?", default="", help="e.g. 'totalsegmentator:total_fast moose:clin_ct_ribs' (empty: nothing)")
    parser.add_argument("--dest", type=Path, required=True, help="weights root (the image's /opt/bonehub/weights)")
    args = parser.parse_args(argv)
    try:
        downloads = plan(args.items, args.dest)
    except BakeWeightsError as error:
        parser.error(str(error))
    if not downloads:
        print("no weights baked: mount them at run time (docker/README.md)")
    for download in downloads:
        print("baking: " + " ".join(download.argv), flush=True)
        subprocess.run(download.argv, check=True, env={**os.environ, **download.env})


if __name__ == "__main__":
    main()
