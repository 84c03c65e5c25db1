"""Environment variables that third-party libraries read or rewrite, set for a block and restored after it.

TotalSegmentator and moosez point nnU-Net's ``nnUNet_*`` variables at their own folders (moosez even
on import), which would break every other nnU-Net user in the same process. ``os.environ`` is
process-wide, so adapters that use this must not predict in parallel threads of one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


@contextmanager
def restored_environment(keys: Iterable[str], **overrides: str | None) -> Iterator[None]:
    """Set ``overrides`` (``None``: leave as is) for the block; restore ``keys`` and the overrides on exit."""
    saved = {key: os.environ.get(key) for key in (*keys, *overrides)}
    try:
        for key, value in overrides.items():
            if value is not None:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
