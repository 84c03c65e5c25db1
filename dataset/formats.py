"""The export formats ``bonehub dataset export --format`` offers: one entry per format, name -> its writer class.

Each class takes the ``dataset.context.ExportContext`` and implements
``dataset.context.ExportFormat``; the command line lists these names.
"""

from __future__ import annotations

from collections.abc import Callable

from dataset.bonehub_format import BoneHubExport
from dataset.context import ExportContext, ExportFormat
from dataset.dicom_export import DicomExport
from dataset.nnunet_export import NnUNetExport

FORMATS: dict[str, Callable[[ExportContext], ExportFormat]] = {
    "dicom": DicomExport,
    "bonehub": BoneHubExport,
    "nnunet": NnUNetExport.from_context,
}
