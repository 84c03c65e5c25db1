"""Session fixtures for model adapter tests: the nnU-Net stand-in (trained once, cached across runs)."""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.nnunet_standin import base_model_folder, build_standin_model


@pytest.fixture(scope="session")
def standin_base() -> Path:
    """The trained base stand-in model folder (builds it on first use, ~1 min; then cached)."""
    return base_model_folder()


@pytest.fixture(scope="session")
def standin_factory(standin_base) -> Callable[..., Path]:
    """``build_standin_model(model_folder, labels, foreground_label, **names)`` with the base model ready."""
    return build_standin_model
