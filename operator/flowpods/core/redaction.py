"""Secrets kept out of spans and logs: URLs and headers as they may be shown.

`url.full` follows the OpenTelemetry HTTP semantic conventions: userinfo becomes `REDACTED:REDACTED`,
and the values of sensitive query parameters become `REDACTED` (the conventions name `AWSAccessKeyId`,
`Signature`, `sig` and `X-Goog-Signature`; the usual names of keys, tokens, passwords, session ids and
OAuth codes are added). Everything else in the URL is kept byte for byte, so a request can be debugged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

REDACTED = "REDACTED"

SENSITIVE_QUERY_PARAMETERS = frozenset(
    name.lower()
    for name in (
        # the OpenTelemetry HTTP semantic conventions' list
        "AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature",
        # signed URLs of other clouds
        "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "X-Goog-Credential",
        # keys, tokens, passwords, sessions and OAuth codes
        "key", "apikey", "api_key", "api-key", "auth", "authorization", "token", "access_token", "refresh_token",
        "id_token", "jwt", "code", "password", "passwd", "pwd", "pass", "secret", "client_secret", "sessionid",
        "session_id", "session", "sid", "credential", "credentials", "private_key", "otp",
    )
)  # fmt: skip
"""Query parameters whose values are always redacted (compared case-insensitively)."""

SECRET_WORDS = ("token", "secret", "password", "passwd", "api-key", "apikey", "api_key", "signature", "session")
"""A query parameter or header whose name contains one of these is redacted too (`x_auth_token`)."""

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth"})


def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter named `name` carries a secret."""
    lowered = name.strip().lower()
    return (
        lowered in SENSITIVE_QUERY_PARAMETERS
        or lowered in SECRET_HEADERS
        or any(word in lowered for word in SECRET_WORDS)
    )


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers fit for a log line: credentials replaced, the rest kept so a request can be debugged."""
    return {name: REDACTED if is_secret_name(name) else value for name, value in headers.items()}


def redact_query(query: str) -> str:
    """The query with each sensitive parameter's value replaced; names, order and encoding kept."""
    parts = []
    for part in query.split("&"):
        name = part.partition("=")[0]
        if is_secret_name(unquote_plus(name)):
            part = f"{name}={REDACTED}"
        parts.append(part)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """A URL fit for logs and `url.full`: userinfo and sensitive query values replaced; an unparsable URL
    is replaced whole (it cannot be shown safely)."""
    try:
        parts: SplitResult = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}:{REDACTED}@" + netloc.rpartition("@")[2]
    query = redact_query(parts.query) if parts.query else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def loggable(text: str, limit: int = 200) -> str:
    """Untrusted text (a namespace from a request path) fit for one log line: control characters shown as
    `\\x0a`-style escapes, so a `%0A` cannot forge a second line, and long text cut."""
    text = text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
