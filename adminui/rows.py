"""An `Exchange` turned into a plain request-log row: bodies capped, secrets redacted.

Pure: data in, a dict of `RequestLog` field values out. The observer calls it on the event loop, so
it must stay cheap: one orjson serialisation per body, and the redaction regexes only ever run on
text already cut to `LOG_BODY_MAX_BYTES`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from routing.exchange import Exchange

REDACTED = "[redacted]"
TRUNCATED_MARK = "\n…[truncated: {kept} of {total} bytes kept]"
# JSON keys whose values are credentials. Matched on serialised JSON, so a value cut off by the cap
# (no closing quote) is redacted too.
_SECRET_FIELD = re.compile(
    r'("(?:authorization|proxy-authorization|api[_-]?key|x-api-key|access[_-]?token|'
    r'password|secret|client[_-]?secret)"\s*:\s*)("(?:[^"\\]|\\.)*(?:"|$)|[^,}\]\s]+)',
    re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[^\s\"',]+", re.IGNORECASE)


@dataclass(frozen=True)
class LogPolicy:
    """What the request log keeps (from settings: LOG_BODIES, LOG_BODY_MAX_BYTES, LMSTUDIO_API_KEY)."""

    bodies: bool = True
    max_bytes: int = 65536
    secrets: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls) -> LogPolicy:
        from django.conf import settings

        key = settings.LMSTUDIO_API_KEY
        return cls(settings.LOG_BODIES, settings.LOG_BODY_MAX_BYTES, (key,) if key else ())


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
    """`text` with credential fields, bearer tokens and the given secret values replaced."""
    text = _SECRET_FIELD.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def body_text(value, policy: LogPolicy, is_json: bool = True) -> tuple[str, bool]:
    """One body as stored: serialised (JSON bodies), capped, redacted; "" when bodies are off."""
    if not policy.bodies or value is None or value == "" or value == []:
        return "", False
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() if is_json else value
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
