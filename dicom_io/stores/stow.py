"""STOW-RS specifics: how many instances go in one request, and what a server's answer says about each instance.

A STOW-RS answer (PS3.18 Table 10.5.3-1) lists refused instances in FailedSOPSequence with a failure
code; these functions turn that into messages naming the SOP instance, for ``StoreWriteError``.
"""

from __future__ import annotations

from pydicom import Dataset

#: ``put_many`` batch limits: small enough for a proxy's or the Healthcare API's request size, large
#: enough that a worklist of SEGs goes in a few requests.
STOW_MAX_INSTANCES = 50
STOW_MAX_BYTES = 64 << 20

_FAILURE_REASONS = {0xA700: "out of resources", 0xA900: "dataset does not match SOP class", 0xC000: "cannot understand",
                    0x0110: "processing failure", 0x0122: "SOP class not supported", 0x0111: "duplicate SOP instance",
                    0x0124: "not authorized", 0x0212: "mismatched SOP class"}


def parse_stow_body(response) -> Dataset | None:
    """The STOW-RS response body of a refused request, when the server sent DICOM JSON."""
    if response is None or not response.content or "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return Dataset.from_json(response.json())
    except ValueError:
        return None


def stow_failures(response: Dataset | None, sop_uid: str) -> list[str]:
    """Failure reasons a STOW-RS response gives for ``sop_uid`` (PS3.18 Table 10.5.3-1): empty when it was stored."""
    if response is None:
        return []
    reasons = []
    for item in response.get("FailedSOPSequence", []):
        if item.get("ReferencedSOPInstanceUID", sop_uid) == sop_uid:
            code = item.get("FailureReason")
            text = f"failure reason 0x{code:04X} ({_FAILURE_REASONS.get(code, 'see PS3.4 Annex GG')})" if code is not None else "failed"
            reasons.append(f"server reports {text} for SOP instance {sop_uid}")
    return reasons
