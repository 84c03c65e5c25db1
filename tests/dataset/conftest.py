"""The review fixtures (the sample through QC, copied per test; the sample on an oblique grid) for the dataset
export tests; not rebuilt here."""

from tests.review.conftest import oblique_base, reviewed_sample, reviewed_sample_base  # noqa: F401
