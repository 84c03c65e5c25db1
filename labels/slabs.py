"""Which labels a label map holds, worked out in slabs on every core.

Why: a whole-body CT label map holds about 80 million voxels, and Stage 1 asks which
labels a map holds at least twice per output (harmonizing, encoding). numpy releases the
GIL in the fancy assignment that answers it but uses one core; split into one slab per
core it takes about half the time on two cores (0.14 s against 0.25 s for a 512 x 512 x
300 map here), with the same answer. Small arrays run in the calling thread, where a pool
would cost more than it saves. Passes that write a new volume (a lookup table's gather)
are not split: two threads faulting in the fresh pages of one output slowed it down.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")
MIN_VOXELS_PER_SLAB = 1 << 22  # about 4 million: below this one thread is as fast
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def workers() -> int:
    """Threads a pass uses: the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_slabs(count: int, action: Callable[[int, int], T]) -> list[T]:
    """``action(start, stop)`` over ``range(count)`` voxels cut into one contiguous slab per worker, results in order."""
    parts = max(1, min(workers(), count // MIN_VOXELS_PER_SLAB))
    bounds = np.linspace(0, count, parts + 1).astype(int)
    if parts == 1:
        return [action(0, count)]
    return list(_shared_pool().map(action, bounds[:-1], bounds[1:]))


def present_values(label_map: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a non-negative integer label map, including 0 if present.

    A presence table filled by fancy assignment: ~15x faster than ``np.bincount``
    on a whole-body map, which first copies the volume to 64-bit integers.
    """
    if label_map.size == 0:
        return np.zeros(0, np.int64)
    if label_map.dtype.kind == "i" and label_map.min() < 0:
        raise ValueError(f"label map holds negative value {int(label_map.min())}")
    flat = label_map.reshape(-1)  # a view when the map is contiguous, else one copy
    size = int(label_map.max()) + 1

    def present_in(start: int, stop: int) -> np.ndarray:
        present = np.zeros(size, bool)
        present[flat[start:stop]] = True
        return present

    return np.flatnonzero(np.logical_or.reduce(in_slabs(flat.size, present_in)))


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="bonehub-slab")
        return _pool
