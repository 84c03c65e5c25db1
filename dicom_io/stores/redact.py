"""Credentials out of URLs: what a store URL may carry that must never reach a table, a log or a message.

A URL given as ``https://user:password@host/...`` or with ``?access_token=...`` works, but the
secret travels in a request header instead (``dicomweb.DicomWebStore``), and every URL that is
shown or stored goes through ``redact_urls`` first: userinfo and the values of token-like query
parameters become ``***``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# query parameters whose value is a secret (case-insensitive), as OAuth, cloud SDKs and signed URLs name them
SECRET_PARAMETERS = frozenset({
    "access_token", "token", "id_token", "refresh_token", "api_key", "apikey", "key", "password", "passwd", "secret",
    "client_secret", "sig", "signature", "x-goog-signature", "x-amz-signature", "x-amz-security-token", "auth",
    "authorization",
})
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` with its userinfo and the values of secret query parameters replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in SECRET_PARAMETERS for key, _ in pairs):
            query = urlencode([(key, MASK if key.lower() in SECRET_PARAMETERS else value) for key, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_urls(text: str) -> str:
    """``text`` with every URL in it redacted (for error messages and log lines)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text) if "://" in text else text


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None, str | None]:
    """``url`` without credentials, the ``(user, password)`` of its userinfo, and an ``access_token``/``token`` value.

    Other secret-looking parameters stay in the URL the server gets (they may be what it expects) and are
    redacted wherever the URL is shown.
    """
    parts = urlsplit(url)
    basic = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        basic = (unquote(user), unquote(password))
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    tokens = [value for key, value in pairs if key.lower() in ("access_token", "token")]
    rest = [(key, value) for key, value in pairs if key.lower() not in ("access_token", "token")]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(rest), parts.fragment)), basic, (tokens[-1] if tokens else None)

