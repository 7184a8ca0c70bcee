"""An `Exchange` turned into a plain request-log row: bodies capped, secrets redacted.

Pure: data in, a dict of `RequestLog` field values out. The observer calls it on the event loop, so
it must stay cheap: one orjson serialisation per body, and the redaction scan only ever runs on text
already cut to `LOG_BODY_MAX_BYTES`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from routing.exchange import Exchange

REDACTED = "[redacted]"
TRUNCATED_MARK = "\n…[truncated: {kept} of {total} bytes kept]"
# A JSON member whose name says it holds a credential, whatever its value (string, number, object,
# list). Matched on serialised JSON already cut to the cap, so the cost is bounded by LOG_BODY_MAX_BYTES;
# a value cut off by the cap is redacted to the end. Counts of tokens (max_tokens, prompt_tokens...) are
# not credentials.
_SECRET_MEMBER = re.compile(
    r'"((?:[^"\\]|\\.)*?(?:token|secret|password|passwd|key|credential|authorization)(?:[^"\\]|\\.)*)"\s*:\s*',
    re.IGNORECASE)
_TOKEN_COUNT = re.compile(r"(?:max_|max_completion_|prompt_|completion_|total_|reasoning_|cached_|num_)?"
                          r"tokens(?:_per_second|_details)?", re.IGNORECASE)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NESTED = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_SCALAR = re.compile(r'[^,}\]\s]*')
_BEARER = re.compile(r"(Bearer\s+)[^\s\"',]+", re.IGNORECASE)
NOT_SERIALISABLE = "[not stored: the body could not be written as JSON: {error}]"


@dataclass(frozen=True)
class LogPolicy:
    """What the request log keeps (from settings: LOG_BODIES, LOG_BODY_MAX_BYTES) and the secret values
    it never stores (API_KEY, LMSTUDIO_API_KEY, the backends' keys and URL passwords)."""

    bodies: bool = True
    max_bytes: int = 65536
    secrets: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls) -> LogPolicy:
        from django.conf import settings

        from routing.secrets import known_secrets

        return cls(settings.LOG_BODIES, settings.LOG_BODY_MAX_BYTES, known_secrets())


def cap(text: str, max_bytes: int, clean=lambda kept: kept) -> tuple[str, bool]:
    """`text` cut to at most `max_bytes` UTF-8 bytes plus a visible mark; and whether it was cut.

    `clean` is applied to the kept text before the mark is added (so redaction never eats the mark).
    """
    data = text.encode()
    if len(data) <= max_bytes:
        return clean(text), False
    kept = data[:max_bytes].decode(errors="ignore")  # never split a character
    return clean(kept) + TRUNCATED_MARK.format(kept=len(kept.encode()), total=len(data)), True


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with credential members, bearer tokens and the given secret values replaced."""
    text = redact_members(text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def redact_members(text: str) -> str:
    """Serialised JSON with the value of every credential-named member replaced, at any depth."""
    out, pos = [], 0
    while (match := _SECRET_MEMBER.search(text, pos)) is not None:
        if _TOKEN_COUNT.fullmatch(match.group(1)):
            out.append(text[pos:match.end()])
            pos = match.end()
            continue
        out.append(text[pos:match.end()] + f'"{REDACTED}"')
        pos = _value_end(text, match.end())
    out.append(text[pos:])
    return "".join(out)


def _value_end(text: str, start: int) -> int:
    """Where the JSON value at `start` ends (the end of `text` when the cap cut it)."""
    opening = text[start:start + 1]
    if opening == '"':
        found = _STRING.match(text, start)
        return found.end() if found else len(text)
    if opening not in ("{", "["):
        return _SCALAR.match(text, start).end()
    depth = 0
    for token in _NESTED.finditer(text, start):
        mark = token.group()
        depth += 1 if mark in ("{", "[") else -1 if mark in ("}", "]") else 0
        if depth == 0:
            return token.end()
    return len(text)


def serialise(value) -> str:
    """Indented JSON; a value orjson cannot write (too deep, an integer beyond 64 bits) becomes a
    note, so that a request is never left without its row."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except (orjson.JSONEncodeError, TypeError) as exc:
        return NOT_SERIALISABLE.format(error=exc)


def body_text(value, policy: LogPolicy, is_json: bool = True) -> tuple[str, bool]:
    """One body as stored: serialised (JSON bodies), capped, redacted; "" when bodies are off."""
    if not policy.bodies or value is None or value == "" or value == []:
        return "", False
    text = serialise(value) if is_json else value
    return cap(text, policy.max_bytes, lambda kept: redact(kept, policy.secrets))


def exchange_to_row(exchange: Exchange, policy: LogPolicy) -> dict:
    """The `RequestLog` field values for a finished exchange."""
    bodies = {name: body_text(value, policy, is_json)
              for name, value, is_json in (
                  ("request_body", exchange.request_body, True),
                  ("upstream_body", exchange.upstream_body, True),
                  ("response_text", exchange.response_text, False),
                  ("thinking", exchange.thinking, False),
                  ("tool_calls", exchange.tool_calls, True))}
    return {
        "request_id": exchange.id,
        "started_at": exchange.started_at,
        "api": exchange.api,
        "endpoint": exchange.endpoint,
        "client": exchange.client[:100],
        "user_agent": redact(exchange.user_agent[:300], policy.secrets),
        "requested_model": exchange.requested_model[:200],
        "alias": exchange.alias[:200],
        "upstream_model": exchange.upstream_model[:200],
        "backend": exchange.backend[:100],
        "stream": exchange.stream,
        "status": exchange.status,
        "outcome": exchange.outcome,
        "error": cap(exchange.error, policy.max_bytes, lambda kept: redact(kept, policy.secrets))[0],
        "duration_ms": exchange.duration_ms,
        "ttft_ms": exchange.ttft_ms,
        **load_fields(exchange),
        "prompt_tokens": exchange.prompt_tokens,
        "completion_tokens": exchange.completion_tokens,
        "tokens_per_second": exchange.tokens_per_second,
        "ttl": exchange.ttl,
        **{name: text for name, (text, _) in bodies.items()},
        "truncated": any(cut for _, cut in bodies.values()),
    }


def load_fields(exchange: Exchange) -> dict:
    """`load_ms` and `load` (JSON: everything but the time) for the model load a request waited for."""
    if not exchange.load:
        return {"load_ms": None, "load": ""}
    load = {k: v for k, v in exchange.load.items() if k != "ms"}
    return {"load_ms": exchange.load.get("ms"), "load": orjson.dumps(load).decode()}
