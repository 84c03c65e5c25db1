"""UID checks: a malformed UID must fail where it enters, not deep in a writer."""

from pydicom.uid import RE_VALID_UID

from dicom_io.errors import InvalidUIDError


def validate_uid(uid: str, what: str) -> str:
    """Return ``uid`` if it is a valid DICOM UID, else raise InvalidUIDError.

    Valid means digits and dots, at most 64 characters, no empty component and
    no leading zero (PS3.5 9.1), so the value is also safe in file paths.
    The raw string is checked: ``pydicom.uid.UID`` strips surrounding
    whitespace (and warns) before its own ``is_valid``, which would let
    ``" 1.2"`` pass. ``what`` names the UID and where it came from.
    """
    if not isinstance(uid, str) or len(uid) > 64 or not RE_VALID_UID.fullmatch(uid):
        raise InvalidUIDError(f"invalid {what}: {uid!r} is not a valid DICOM UID")
    return uid
