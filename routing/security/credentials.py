"""The credentials the proxy holds, so that none of them is ever shown: URLs are displayed with their
user and password masked, and the request log replaces the values wherever a client echoes them."""
from __future__ import annotations

from typing import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary text everywhere; no real key is that short


def split_credentials(url: str) -> tuple[str, str, str]:
    """(the URL without user and password, user, password), both unquoted; "" when absent."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, "", ""
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, unquote(parts.username or ""), unquote(parts.password or "")


def mask_url(url: str) -> str:
    """`url` as it may be shown: `http://***@host:1234` when it carries a user or password."""
    bare, user, password = split_credentials(url)
    if not (user or password):
        return url
    scheme, _, rest = bare.partition("://")
    return f"{scheme}://{MASK}@{rest}"


def url_secrets(url: str) -> tuple[str, ...]:
    """The strings of a URL that are secret: its password and its raw `user:password`."""
    parts = urlsplit(url)
    found = []
    if parts.password:
        found += [parts.password, unquote(parts.password), f"{parts.username or ''}:{parts.password}"]
    return tuple(found)


def known_secrets(values: Iterable[str], backends: Iterable) -> tuple[str, ...]:
    """Every credential in force: `values` (API_KEY...) and each backend's key and URL password,
    longest first (so that masking leaves no partial leftovers)."""
    found = list(values)
    for backend in backends:
        found += [backend.api_key, *url_secrets(backend.url)]
    unique = {value for value in found if value and len(value) >= MIN_SECRET_LENGTH}
    return tuple(sorted(unique, key=len, reverse=True))
