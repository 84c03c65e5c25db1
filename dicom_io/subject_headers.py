"""Who a CT volume belongs to, as DICOM attributes: BoneHub ids and Subject_info metadata → CT headers.

A CT made from a volume file carries its identity and subject metadata in its own headers, so that
everything downstream (the manifest, QC, review, a BoneHub mask locator) reads them as it reads any
DICOM CT, and the headers are the one place the metadata is written down:

- PatientID: the BoneHub subject id (``001_000001``), or ``volume-<first 16 hex of the file digest>``
  for a plain file; PatientName stays empty (never a name);
- Clinical Trial Subject module for BoneHub-Dataset input: ClinicalTrialSponsorName ``BoneHub``,
  ClinicalTrialProtocolID = dataset id (``001``), ClinicalTrialProtocolName = the dataset's name from
  Dataset_info (empty when unknown), ClinicalTrialSiteID/SiteName empty, ClinicalTrialSubjectID = subject id;
- from Subject_info, where present and plausible: PatientAge (AS, ``065Y``), PatientSex (M/F/O),
  PatientWeight (kg), PatientSize (m; Subject_info gives cm).

A value that is present but implausible (age outside 0..150 years, weight outside 0.2..700 kg, height
outside 20..300 cm, a sex other than M/F/O/male/female/other) is left out with a warning that names the
subject and the field, never the value: logs carry no patient data beyond ids.
"""

from __future__ import annotations

import logging
import math

from dicom_io.bonehub_layout import BoneHubSubject

log = logging.getLogger("bonehub.volumes")

SPONSOR = "BoneHub"
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O"}
_AGE_YEARS = (0, 150)
_WEIGHT_KG = (0.2, 700.0)
_HEIGHT_CM = (20.0, 300.0)


def subject_attributes(subject: BoneHubSubject | None, patient_id: str) -> dict[str, object]:
    """DICOM attributes by keyword for the CT of ``subject`` (None: a plain volume file, PatientID only)."""
    attributes: dict[str, object] = {"PatientID": patient_id, "PatientName": ""}
    if subject is None:
        return attributes
    name = subject.dataset_info.get("name")
    attributes |= {
        "ClinicalTrialSponsorName": SPONSOR,
        "ClinicalTrialProtocolID": subject.dataset_id,
        "ClinicalTrialProtocolName": name[:64] if isinstance(name, str) else "",
        "ClinicalTrialSiteID": "",
        "ClinicalTrialSiteName": "",
        "ClinicalTrialSubjectID": subject.subject_id,
    }
    return attributes | _metadata(subject.subject_info, subject.subject_id)


def _metadata(record: dict, subject_id: str) -> dict[str, object]:
    """PatientAge/Sex/Weight/Size from one Subject_info record; implausible values left out with a warning."""
    found: dict[str, object] = {}
    if (age := _number(record, "age", _AGE_YEARS, subject_id)) is not None:
        found["PatientAge"] = f"{int(age):03d}Y"
    if (gender := record.get("gender")) not in (None, ""):
        if isinstance(gender, str) and gender.strip().lower() in _SEX:
            found["PatientSex"] = _SEX[gender.strip().lower()]
        else:
            _skip(subject_id, "gender")
    if (weight := _number(record, "weight", _WEIGHT_KG, subject_id)) is not None:
        found["PatientWeight"] = _decimal(weight)
    if (height := _number(record, "height", _HEIGHT_CM, subject_id)) is not None:
        found["PatientSize"] = _decimal(height / 100.0)
    return found


def _number(record: dict, field: str, bounds: tuple[float, float], subject_id: str) -> float | None:
    value = record.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not (
            bounds[0] <= value <= bounds[1]):
        _skip(subject_id, field)
        return None
    return float(value)


def _decimal(value: float) -> str:
    """A DS value (at most 16 characters) without float noise: 1.75, not 1.7500000000000002."""
    return f"{value:.6g}"


def _skip(subject_id: str, field: str) -> None:
    log.warning("subject %s: Subject_info %s is not a plausible value; left out of the CT headers", subject_id, field)
