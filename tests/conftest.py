"""Shared test fixtures: paths to bundled test data and the repository root."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA
