"""The request log exported: conversations as OpenAI chat fine-tuning JSONL, requests as CSV.

Pure: a row of `RequestLog` values in (a dict, as `QuerySet.values()` gives it), a line out. A logged
request body is read with its own dialect's translation (`routing.dialects`: the same functions that
turn it into LM Studio's body), so every dialect comes out in one shape:
`{"messages": [...], "tools": [...], "metadata": {...}}`, tool-call arguments as JSON strings, tool
results as `tool` messages with their `tool_call_id`, and the logged answer as the last assistant
message. The conversation is the client's (the alias's system prompt and messages are not in it).
A row that cannot make a faithful example is skipped, with the reason (`Skip`).
"""
from __future__ import annotations

import csv
from typing import Callable, Iterable, Iterator, Mapping

import orjson

from routing.core.errors import ProxyError
from routing.dialects import anthropic, ollama, openai_chat, responses

from .conversation import parse_json
from .rows import REDACTED

# Logged endpoint -> the dialect's request translation (client body -> OpenAI chat-shaped body).
CONVERSATIONS: dict[str, Callable[[dict], dict]] = {
    "/api/chat": ollama.chat_to_openai,
    "/api/generate": ollama.generate_to_openai,
    "/v1/chat/completions": openai_chat.check_chat,
    "/v1/completions": openai_chat.check_completion,
    "/v1/responses": responses.to_openai,
    "/v1/messages": anthropic.to_openai,
}
JSONL_FIELDS = ("request_id", "started_at", "api", "endpoint", "alias", "upstream_model", "truncated",
                "request_body", "response_text", "tool_calls", "prompt_tokens", "completion_tokens",
                "duration_ms", "ttft_ms", "load_ms", "tokens_per_second")
# The columns of the history list, one request a row.
CSV_FIELDS = ("request_id", "started_at", "api", "endpoint", "stream", "requested_model", "alias",
              "upstream_model", "backend", "status", "outcome", "duration_ms", "ttft_ms", "load_ms",
              "prompt_tokens", "completion_tokens", "tokens_per_second")
# Why a row is left out of the JSONL; the first two are what the history cannot give back faithfully.
TRUNCATED, REDACTED_ROW = "truncated", "redacted"
NOT_A_CONVERSATION, NO_ANSWER, UNREADABLE = "not a conversation", "no answer", "unreadable body"


class Skip(Exception):
    """A row that makes no fine-tuning example; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def example(row: Mapping) -> dict:
    """One fine-tuning example for a logged request, or `Skip`."""
    build = CONVERSATIONS.get(row["endpoint"])
    if build is None:
        raise Skip(NOT_A_CONVERSATION)
    if row["truncated"]:
        raise Skip(TRUNCATED)
    if any(REDACTED in row[name] for name in ("request_body", "response_text", "tool_calls")):
        raise Skip(REDACTED_ROW)
    body = parse_json(row["request_body"])
    if not isinstance(body, dict):
        raise Skip(UNREADABLE if row["request_body"] else NOT_A_CONVERSATION)
    try:
        built = build(body)
    except ProxyError:
        raise Skip(UNREADABLE) from None
    prompt = built.get("messages")
    if prompt is None:     # a text completion (/v1/completions, raw /api/generate): the prompt is the user's
        text = built.get("prompt")
        prompt = [{"role": "user", "content": "\n".join(map(str, text)) if isinstance(text, list) else text}]
    reply = answer_message(row["response_text"], row["tool_calls"])
    if not prompt or reply is None:
        raise Skip(NO_ANSWER)
    out: dict = {"messages": [message(m) for m in prompt] + [reply]}
    if built.get("tools"):
        out["tools"] = [tool(t) for t in built["tools"]]
    out["metadata"] = metadata(row)
    return out


def message(raw: dict) -> dict:
    """An OpenAI chat message in the fine-tuning shape: role, content, tool calls, tool_call_id."""
    role = "system" if raw["role"] == "developer" else raw["role"]
    out: dict = {"role": role}
    content = content_of(raw.get("content"))
    calls = [tool_call(call, i) for i, call in enumerate(raw.get("tool_calls") or ())]
    if content or not calls:
        out["content"] = content
    if calls:
        out["tool_calls"] = calls
    if role == "tool":
        out["tool_call_id"] = str(raw.get("tool_call_id") or "")
    return out


def content_of(content) -> str | list[dict]:
    """A string, or the text and image parts when there are images (text-only parts are joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [p for p in content if isinstance(p, dict) and p.get("type") in ("text", "image_url")]
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p.get("text", "") for p in parts)
    return [{"type": "text", "text": p.get("text", "")} if p["type"] == "text"
            else {"type": "image_url", "image_url": p["image_url"]} for p in parts]


def tool_call(call: dict, index: int) -> dict:
    """An OpenAI tool call with its arguments as a JSON string (Ollama's are objects)."""
    fn = call.get("function") or {}
    args = fn.get("arguments", "")
    if not isinstance(args, str):
        args = orjson.dumps(args).decode()
    return {"id": call.get("id") or f"call_{index}", "type": "function",
            "function": {"name": fn.get("name", ""), "arguments": args or "{}"}}


def tool(raw: dict) -> dict:
    fn = raw.get("function") or {}
    return {"type": "function", "function": {k: fn[k] for k in ("name", "description", "parameters") if k in fn}}


def answer_message(response_text: str, tool_calls_text: str) -> dict | None:
    """The logged answer as the last assistant message; None when there was none."""
    calls = parse_json(tool_calls_text) if tool_calls_text else []
    calls = calls if isinstance(calls, list) else []
    if not response_text and not calls:
        return None
    return message({"role": "assistant", "content": response_text, "tool_calls": calls})


def metadata(row: Mapping) -> dict:
    return {
        "id": row["request_id"], "time": row["started_at"].isoformat(), "alias": row["alias"],
        "model": row["upstream_model"], "dialect": row["api"], "endpoint": row["endpoint"],
        "tokens": {"prompt": row["prompt_tokens"], "completion": row["completion_tokens"]},
        "timings": {"duration_ms": row["duration_ms"], "ttft_ms": row["ttft_ms"], "load_ms": row["load_ms"],
                    "tokens_per_second": row["tokens_per_second"]},
    }


def jsonl_lines(rows: Iterable[Mapping], skipped: dict[str, int]) -> Iterator[bytes]:
    """One JSON line per example; each skipped row is counted in `skipped` by its reason."""
    for row in rows:
        try:
            yield orjson.dumps(example(row)) + b"\n"
        except Skip as skip:
            skipped[skip.reason] = skipped.get(skip.reason, 0) + 1


class _Line:
    """A file for `csv.writer` that hands back what is written instead of keeping it."""

    def write(self, text: str) -> str:
        return text


def csv_lines(rows: Iterable[Mapping], skipped: dict[str, int] | None = None) -> Iterator[bytes]:
    """The header, then one line per request (times in ISO 8601, empty for unknown numbers)."""
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_FIELDS).encode()
    for row in rows:
        yield writer.writerow([row["started_at"].isoformat() if name == "started_at"
                               else "" if row[name] is None else row[name] for name in CSV_FIELDS]).encode()


FORMATS = {"jsonl": (JSONL_FIELDS, jsonl_lines, "application/jsonl"), "csv": (CSV_FIELDS, csv_lines, "text/csv")}


def skipped_summary(skipped: Mapping[str, int]) -> str:
    """"3 rows skipped: 2 truncated, 1 redacted" (or "" when none was)."""
    total = sum(skipped.values())
    if not total:
        return ""
    return f"{total} rows skipped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))


def rows(qs, fmt: str, chunk_size: int = 2000) -> Iterator[Mapping]:
    """The rows of a (filtered) request-log queryset an export needs, oldest first, read in chunks:
    constant memory however many there are."""
    return qs.order_by("started_at", "id").values(*FORMATS[fmt][0]).iterator(chunk_size=chunk_size)
