"""Where downloads and derived series are kept when no folder is given: one folder per output, never shared.

Stage 1, Stage 2 and review must default to the same series cache, so that QC and review read the CT
series Stage 1 fetched (or made from a volume file) instead of fetching them again; they all know the
output store (``--out``), so the default is a folder under the system's temp dir named after it. Runs
into other outputs never share a cache by default (``--cache-dir`` names one to share on purpose).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

SERIES, IDC_SEGS = "series", "idc-seg"  # fetched CT series; SEGs an IDC analysis result published


def default_cache_dir(kind: str = SERIES, output: str = "") -> Path:
    """``<temp dir>/bonehub-<kind>-cache[/<16 hex digits naming output>]``: the cache of the runs into ``output``."""
    root = Path(tempfile.gettempdir()) / f"bonehub-{kind}-cache"
    return root / hashlib.sha256(output.encode()).hexdigest()[:16] if output else root
