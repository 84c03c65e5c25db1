"""The error of a dataset export asked for something that cannot be done as given.

It derives from ``labels.errors.BoneHubInputError`` so the command line answers it
with one line and exit status 2, like every other bad input.
"""

from __future__ import annotations

from labels.errors import BoneHubInputError


class ExportInputError(BoneHubInputError):
    """A selection, a folder or a stored result the export cannot use; nothing of the item was written."""
