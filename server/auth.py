"""Optional bearer-token auth: `Authorization: Bearer TOKEN` or `?token=TOKEN`.

Browsers cannot set headers on a WebSocket, hence the query parameter. The comparison takes the
same time whatever the token's content.
"""

import hmac
from collections.abc import Mapping


def presented_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token a request carries: the bearer header first, then the `token` query parameter."""
    header = headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query.get("token") or None


def is_authorized(expected: str | None, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """True when no token is configured or the request presents the right one."""
    if expected is None:
        return True
    given = presented_token(headers, query)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
