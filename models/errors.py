"""Errors a segmentation source raises, so the pipeline can fail one item and say why."""

from __future__ import annotations


class ModelUnavailableError(RuntimeError):
    """A source cannot run here: weights, licence or library missing.

    The message names the source, what is missing, where it was looked for and how to get it.
    """


class ModelOutputError(RuntimeError):
    """A source ran but its output cannot be used (wrong labels, wrong grid, empty file)."""
