"""An `Exchange` turned into a plain request-log row: bodies capped, secrets redacted.

Pure: data in, a dict of `RequestLog` field values out. The request log's writer thread calls it; it
stays cheap whatever the size of a body: a body is pruned to `LOG_BODY_MAX_BYTES` before it is
serialised, and the redaction scan only ever runs on text already cut to that size.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import orjson
from django.conf import settings

from routing.core.exchange import Exchange

REDACTED = "[redacted]"
TRUNCATED_MARK = "\n…[truncated: {kept} of {total} bytes kept]"
# A JSON member whose name says it holds a credential has its value redacted, whatever it is (string,
# number, object, list), on serialised JSON already cut to the cap; a value cut off by the cap is
# redacted to the end. Counts of tokens (max_tokens, prompt_tokens...) are not credentials.
# _STRING_TOKEN matches every JSON string in turn, and a colon after it (then it is a member's name).
# Unrolled ("normal* (special normal*)*"), so a long string is one tight scan: linear in the text.
_STRING_TOKEN = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"(\s*:\s*)?')
_SECRET_NAME = re.compile(r"token|secret|password|passwd|key|credential|authorization", re.IGNORECASE)
_TOKEN_COUNT = re.compile(r"(?:max_|max_completion_|prompt_|completion_|total_|reasoning_|cached_|num_)?"
                          r"tokens(?:_per_second|_details)?", re.IGNORECASE)
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_STRUCTURE = re.compile(r'["\[\]{}]')
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
    def from_settings(cls, secrets: tuple[str, ...] = ()) -> LogPolicy:
        """The settings' policy; `secrets` is the application's snapshot (`BackendPool.secrets`)."""
        return cls(settings.LOG_BODIES, settings.LOG_BODY_MAX_BYTES, secrets)


def cap(text: str, max_bytes: int, clean=lambda kept: kept, total: str | None = None) -> tuple[str, bool]:
    """`text` cut to at most `max_bytes` UTF-8 bytes plus a visible mark; and whether it was cut.

    `clean` is applied to the kept text before the mark is added (so redaction never eats the mark).
    `total` says what `text` was cut from, when it is itself a part (a pruned body).
    """
    data = text.encode()
    if len(data) <= max_bytes and total is None:
        return clean(text), False
    kept = data[:max_bytes].decode(errors="ignore")  # never split a character
    return clean(kept) + TRUNCATED_MARK.format(kept=len(kept.encode()), total=total or len(data)), True


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with credential members, bearer tokens and the given secret values replaced."""
    text = redact_members(text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def redact_members(text: str) -> str:
    """Serialised JSON with the value of every credential-named member replaced, at any depth.

    Linear in the text: outside strings JSON has no quotes, so the next quote always opens a string,
    which is matched once; a string the cap cut off runs to the end of the text (scanning on from the
    quotes escaped inside it would be quadratic)."""
    out, done, pos = [], 0, 0
    while (start := text.find('"', pos)) >= 0:
        match = _STRING_TOKEN.match(text, start)
        if match is None:
            break
        pos = match.end()
        name = match.group(1)
        if match.group(2) and _SECRET_NAME.search(name) and not _TOKEN_COUNT.fullmatch(name):
            out.append(text[done:pos] + f'"{REDACTED}"')
            done = pos = _value_end(text, pos)
    out.append(text[done:])
    return "".join(out)


def _value_end(text: str, start: int) -> int:
    """Where the JSON value at `start` ends (the end of `text` when the cap cut it)."""
    if text[start:start + 1] not in ("{", "[", '"'):
        return _SCALAR.match(text, start).end()
    depth, pos = 0, start
    while (token := _STRUCTURE.search(text, pos)) is not None:
        if token.group() == '"':
            found = _STRING.match(text, token.start())
            if found is None:
                return len(text)
            pos = found.end()
        else:
            depth += 1 if token.group() in "{[" else -1
            pos = token.end()
        if depth == 0:
            return pos
    return len(text)


def serialise(value) -> str:
    """Indented JSON; a value orjson cannot write (too deep, an integer beyond 64 bits) becomes a
    note, so that a request is never left without its row."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except (orjson.JSONEncodeError, TypeError) as exc:
        return NOT_SERIALISABLE.format(error=exc)


def pruned(value, budget: int):
    """(`value` cut down to about `budget` characters of JSON, whether anything was left out).

    The cap comes before serialising: an agent's conversation can be megabytes, of which the log keeps
    the first LOG_BODY_MAX_BYTES, so long strings are cut and lists and objects stop once the budget is
    spent, and only what is kept is ever written out. The walk visits at most what it keeps."""
    left, cut = budget, False

    def walk(item):
        nonlocal left, cut
        if isinstance(item, str):
            if len(item) > left:
                item, cut = item[:max(left, 0)], True
            left -= len(item) + 4
            return item
        if isinstance(item, (dict, list)):
            is_dict, out = isinstance(item, dict), {} if isinstance(item, dict) else []
            for entry in item.items() if is_dict else item:
                if left <= 0:
                    cut = True
                    break
                if is_dict:
                    left -= len(entry[0]) + 6
                    out[entry[0]] = walk(entry[1])
                else:
                    out.append(walk(entry))
            return out
        left -= 8
        return item

    return walk(value), cut


def body_text(value, policy: LogPolicy, is_json: bool = True) -> tuple[str, bool]:
    """One body as stored: serialised (JSON bodies, pruned to the cap first), capped, redacted; ""
    when bodies are off."""
    if not policy.bodies or value is None or value == "" or value == []:
        return "", False
    total = None
    if is_json:
        value, was_cut = pruned(value, policy.max_bytes)
        text = serialise(value)
        total = f"more than {len(text.encode())}" if was_cut else None
    else:
        text = value
    return cap(text, policy.max_bytes, lambda kept: redact(kept, policy.secrets), total)


def exchange_to_row(exchange: Exchange, policy: LogPolicy) -> dict:
    """The `RequestLog` field values for a finished exchange."""
    if exchange.own_secrets:  # the request's own key, wherever the client echoed it
        policy = dataclasses.replace(policy, secrets=policy.secrets + exchange.own_secrets)
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
        "key_name": exchange.key_name[:100],
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
        "replay_of": "",          # a replay is marked once its row is written (adminui.replay)
    }


def load_fields(exchange: Exchange) -> dict:
    """`load_ms` and `load` (JSON: everything but the time) for the model load a request waited for."""
    if not exchange.load:
        return {"load_ms": None, "load": ""}
    load = {k: v for k, v in exchange.load.items() if k != "ms"}
    return {"load_ms": exchange.load.get("ms"), "load": orjson.dumps(load).decode()}
