"""API keys, one per person: how a key is made and recognised, what it may use, and the snapshot the
head gate consults.

A key is `lmp_` + 43 URL-safe random characters (`secrets.token_urlsafe(32)`: 256 bits). Only its SHA-256
and a short visible prefix are stored (`routing.models.ApiKey`): a key that long and random needs no slow
password hash. The gate never queries the database: it looks a presented key up in a `KeyRing`, an
immutable snapshot of the enabled keys that `routing.proxy.keystore` swaps whole at most about once a
second, so a revoked key is refused within about a second on every process.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import Mapping

from routing.core.names import normalize_name

KEY_PREFIX = "lmp_"
SHOWN_CHARS = 8  # of the random part, kept in clear after the prefix so people recognise their key
OPERATOR = "operator"  # the name of the API_KEY setting's holder in the history


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """The SHA-256 of a key, hex: what is stored and looked up."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def visible_prefix(key: str) -> str:
    return key[:len(KEY_PREFIX) + SHOWN_CHARS]


def parse_scope(text: str) -> tuple[str, ...]:
    """Comma-separated names and patterns (`coder, chat*`) as a tuple; empty means every model. A
    ':latest' tag is dropped, as alias names drop it."""
    return tuple(dict.fromkeys(normalize_name(part) for part in text.split(",") if part.strip()))


@dataclass(frozen=True)
class KeyGrant:
    """What one key may do. The operator's (`API_KEY`) has no scope and no limits."""

    name: str
    scope: tuple[str, ...] = ()
    max_concurrent: int | None = None
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    expires_at: datetime | None = None
    hash: str = field(default="", repr=False)

    def allows(self, model: str) -> bool:
        """Whether this key may use the model a client names (the name asked for, not what it resolves
        to: a name outside the scope that a pattern or the fallback would serve is still refused)."""
        name = normalize_name(model)
        return not self.scope or any(fnmatchcase(name, pattern) for pattern in self.scope)

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(timezone.utc))


OPERATOR_GRANT = KeyGrant(OPERATOR)


@dataclass(frozen=True)
class KeyRing:
    """The enabled keys at one moment, by hash. `required`: some enabled key exists, so the API needs a
    key even without `API_KEY` (an expired key still counts: its holders must not find the API open), and
so it does when the keys could not be read (`closed`): the gate fails closed."""

    grants: Mapping[str, KeyGrant] = field(default_factory=dict)
    closed: bool = False  # the keys could not be read: a key is required, and only API_KEY is known

    @property
    def required(self) -> bool:
        return self.closed or bool(self.grants)

    def find(self, presented: str, now: datetime | None = None) -> KeyGrant | None:
        """The grant of a presented key, or None for an unknown, disabled or expired one."""
        if not presented.startswith(KEY_PREFIX):
            return None
        digest = key_hash(presented)
        grant = self.grants.get(digest)
        if grant is None or not hmac.compare_digest(grant.hash, digest) or grant.expired(now):
            return None
        return grant


EMPTY_RING = KeyRing()
CLOSED_RING = KeyRing(closed=True)
