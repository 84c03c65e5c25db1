"""Rebuild the bundled sample CT series from TotalSegmentator's test CT (NIfTI).

Run from the repository root: ``python sample/ts_abdomen_3mm/make_sample.py PATH/TO/ct.nii.gz``.
The output is deterministic (UIDs derive from fixed strings), so rerunning
reproduces the committed files byte for byte.
"""

import shutil
import sys
from pathlib import Path

import highdicom as hd
import SimpleITK as sitk

from dicom_io.ct_writer import write_ct_series
from dicom_io.provenance import derived_uid

HERE = Path(__file__).resolve().parent
SEED = "bonehub sample ts_abdomen_3mm"


def main(nifti: str) -> None:
    image = sitk.ReadImage(nifti)
    study_uid, series_uid, frame_uid = (derived_uid(SEED, what) for what in ("study", "series", "frame of reference"))
    # Standard axial slices: stacked toward the head, rows running posterior, columns to the patient's left.
    volume = hd.Volume.from_simpleitk(image, frame_of_reference_uid=frame_uid).to_patient_orientation("HPL")
    out = HERE / "ct"
    shutil.rmtree(out, ignore_errors=True)
    files = write_ct_series(
        volume, out, study_instance_uid=study_uid, series_instance_uid=series_uid, frame_of_reference_uid=frame_uid,
        patient_name="Anonymous^Sample", patient_id="BONEHUB-SAMPLE-1", series_description="TotalSegmentator test CT (3 mm)",
        study_date="20000101", study_time="000000",
    )
    print(f"wrote {len(files)} slices of series {series_uid} to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
