"""Errors raised for DICOM input we refuse to use.

Every message names the problem and where it is (file path or UID), so a
failed batch job can be traced to the offending object without a debugger.
All derive from ``labels.errors.BoneHubInputError``, which the command line catches.
"""

from labels.errors import BoneHubInputError


class DicomInputError(BoneHubInputError):
    """DICOM input that cannot be used as given."""


class NotCTError(DicomInputError):
    """The selected object or series is not CT (its modality is named)."""


class SeriesSelectionError(DicomInputError):
    """No series, an ambiguous choice of series, or a requested UID not found."""


class TooFewSlicesError(DicomInputError):
    """A series with fewer than two slices does not define a volume."""


class MissingAttributeError(DicomInputError):
    """A required attribute is absent."""


class MissingFrameOfReferenceError(MissingAttributeError):
    """FrameOfReferenceUID is absent, so positions cannot be related to others."""


class InvalidUIDError(DicomInputError):
    """A UID is empty or not a valid DICOM UID."""


class MissingSliceError(DicomInputError):
    """A gap of a whole number of slice spacings: slices are missing."""


class DuplicateSliceError(DicomInputError):
    """Two slices share a position or a SOPInstanceUID."""


class NonUniformSpacingError(DicomInputError):
    """Slice spacing varies beyond the tolerance."""


class GantryTiltError(DicomInputError):
    """Slices are not stacked along their normal (tilted gantry)."""


class InconsistentGeometryError(DicomInputError):
    """Orientation, matrix size, pixel spacing or frame of reference differ."""


class UnreadableSliceError(DicomInputError):
    """A file beside a series' slices looks like DICOM but cannot be read: it may be a lost slice."""


class ImplausibleGeometryError(DicomInputError):
    """Pixel or slice spacing outside what any CT scanner produces."""


class UnknownHUError(DicomInputError):
    """Stored values whose Hounsfield units cannot be known (no Rescale Intercept/Slope on unsigned pixels)."""
