"""Patient-level cross-validation folds for an nnU-Net export (``splits_final.json``).

nnU-Net splits cases at random when it finds no ``splits_final.json``; two series of one patient
then land in training and validation of the same fold, and validation scores are too good. Here a
patient is the BoneHub subject of the CT (``ClinicalTrialSubjectID`` of a CT made from a
BoneHub-Dataset, with its dataset id), else its PatientID, else (an anonymised header without one)
its study. Patients are dealt to folds largest first, each to the fold with the fewest cases so
far, ties broken by a hash of the patient key: deterministic, balanced, no patient in two folds.
With fewer patients than folds there are as many folds as patients; with one patient there is no
split at all (train nnU-Net's fold ``all``).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict

from dicom_io.ct_series import CTSeries
from dicom_io.subject_headers import SPONSOR

log = logging.getLogger("bonehub.dataset")

DEFAULT_FOLDS = 5


def patient_key(ct: CTSeries) -> str:
    """Who the CT belongs to, as a key that never puts one patient's series into two folds."""
    header = ct.datasets[0]
    if header.get("ClinicalTrialSponsorName") == SPONSOR and header.get("ClinicalTrialSubjectID"):
        return f"bonehub:{header.get('ClinicalTrialProtocolID', '')}/{header.ClinicalTrialSubjectID}"
    if patient_id := str(header.get("PatientID", "") or "").strip():
        return f"patient:{patient_id}"
    log.warning("series %s: no PatientID; its study %s counts as its patient for the folds",
                ct.series_instance_uid, ct.study_instance_uid)
    return f"study:{ct.study_instance_uid}"


def patient_folds(case_patients: dict[str, str], n_folds: int = DEFAULT_FOLDS) -> list[dict[str, list[str]]]:
    """nnU-Net's ``splits_final.json`` content: per fold the ``train`` and ``val`` case ids (sorted).

    ``case_patients``: case id -> patient key. Returns ``[]`` for fewer than two patients.
    """
    if n_folds < 2:
        raise ValueError(f"{n_folds} folds: cross-validation needs at least 2")
    cases_of: dict[str, list[str]] = defaultdict(list)
    for case, patient in case_patients.items():
        cases_of[patient].append(case)
    n_folds = min(n_folds, len(cases_of))
    if n_folds < 2:
        return []
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for patient in sorted(cases_of, key=lambda p: (-len(cases_of[p]), _digest(p))):
        smallest = min(range(n_folds), key=lambda fold: (len(folds[fold]), fold))
        folds[smallest] += cases_of[patient]
    return [{"train": sorted(set(case_patients) - set(val)), "val": sorted(val)} for val in folds]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
