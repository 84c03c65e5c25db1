"""How a DICOMweb request is retried: only answers that say "try later", with backoff and a capped Retry-After.

The retries live in the requests session (urllib3), so every STOW, QIDO and WADO request gets them; a
refused or unresolvable connection fails at once (dicomweb-client's own retrying would wait about 30 s
on it).
"""

from __future__ import annotations

from urllib3.util.retry import Retry

#: Answers that mean "try later": retried with backoff (and the server's Retry-After), then StoreUnavailableError.
RETRIED_STATUSES = (429, 500, 502, 503, 504)


class _CappedRetry(Retry):
    """urllib3's Retry, with the server's Retry-After capped at ``backoff_max`` so no answer can park a worker.

    A call then ends after ``retries + 1`` attempts of at most ``timeout`` each and ``retries`` waits of at
    most ``backoff_max`` each, whatever the server says.
    """

    def get_retry_after(self, response) -> float | None:
        wait = super().get_retry_after(response)
        return None if wait is None else min(wait, self.backoff_max)


def mount_retries(session, retries: int, backoff_s: float, max_wait_s: float) -> None:
    """Retry ``session``'s HTTP(S) requests answered with ``RETRIED_STATUSES`` up to ``retries`` times."""
    from requests.adapters import HTTPAdapter

    adapter = HTTPAdapter(max_retries=_CappedRetry(
        total=retries, connect=0, read=0, other=0, status=retries, allowed_methods=None,
        status_forcelist=RETRIED_STATUSES, backoff_factor=backoff_s, backoff_jitter=backoff_s,
        backoff_max=max_wait_s, raise_on_status=False,
    ))
    session.mount("http://", adapter)
    session.mount("https://", adapter)


def http_status(error: Exception) -> int | None:
    """The HTTP status of a requests error, or None when it carries no response."""
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)
