"""The one base class of every error that means "this input cannot be used as given".

Each package keeps its own error classes (``dicom_io.errors``, ``models.sources``,
``qc.assess`` ...) and derives them from ``BoneHubInputError`` as well, so the
command line catches all of them in one place and answers with one line and
exit status 2 instead of a traceback. It lives in ``labels`` because every
package may import ``labels`` (docs/architecture.md).
"""

from __future__ import annotations


class BoneHubInputError(ValueError):
    """Input that cannot be used as given; the message names the input and what is wrong with it."""
