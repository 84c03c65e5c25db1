"""Which torch device a model runs on: CUDA when present, else CPU, unless the user says otherwise."""

from __future__ import annotations

import os

DEVICE_ENV = "BONEHUB_DEVICE"
"""Override for every adapter, e.g. ``cpu`` on a GPU machine or ``cuda:1``."""


def torch_device(requested: str | None = None) -> str:
    """``requested``, else ``$BONEHUB_DEVICE``, else ``cuda`` when torch sees a GPU, else ``cpu``."""
    choice = requested or os.environ.get(DEVICE_ENV)
    if choice:
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
