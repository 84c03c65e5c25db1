"""Where downloads are kept when no folder is given: one folder per kind under the system's temp dir.

Stage 1, Stage 2 and review must default to the same series cache, so that QC
and review read the CT series Stage 1 fetched instead of downloading them again
(``--cache-dir`` names another).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

SERIES, IDC_SEGS = "series", "idc-seg"  # fetched CT series; SEGs an IDC analysis result published


def default_cache_dir(kind: str = SERIES) -> Path:
    """``<temp dir>/bonehub-<kind>-cache``."""
    return Path(tempfile.gettempdir()) / f"bonehub-{kind}-cache"
