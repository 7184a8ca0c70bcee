"""A logged request body made readable: the conversation as messages, and a "copy as curl" command."""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field

import orjson


@dataclass
class Message:
    role: str
    text: str = ""
    tool_calls: list[dict] = field(default_factory=list)   # [{"name", "arguments"}] as display text
    images: int = 0
    note: str = ""                                           # e.g. which tool call a result answers


def parse_json(text: str):
    """A stored JSON body, or None when it is empty or was cut by the size cap."""
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _text_and_images(content) -> tuple[str, int]:
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return ("" if content is None else str(content)), 0
    texts = [part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"]
    images = sum(1 for part in content if isinstance(part, dict) and part.get("type") in ("image_url", "image"))
    return "\n".join(texts), images


def _tool_calls(calls) -> list[dict]:
    out = []
    for call in calls or ():
        fn = (call.get("function") or {}) if isinstance(call, dict) else {}
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            args = orjson.dumps(args, option=orjson.OPT_INDENT_2).decode()
        out.append({"name": fn.get("name", "?"), "arguments": args})
    return out


def _message(raw: dict) -> Message:
    text, images = _text_and_images(raw.get("content"))
    role = str(raw.get("role", "?"))
    note = ""
    if role == "tool":
        note = raw.get("tool_name") or raw.get("name") or raw.get("tool_call_id") or ""
    return Message(role, text, _tool_calls(raw.get("tool_calls")), images + len(raw.get("images") or ()), note)


def conversation(body) -> list[Message]:
    """The messages of a chat body, or the system + prompt of a generate/completions body."""
    if not isinstance(body, dict):
        return []
    if isinstance(body.get("messages"), list):
        return [_message(m) for m in body["messages"] if isinstance(m, dict)]
    messages = []
    if isinstance(body.get("system"), str) and body["system"]:
        messages.append(Message("system", body["system"]))
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = "\n".join(map(str, prompt))
    if prompt is not None:
        messages.append(Message("user", str(prompt), images=len(body.get("images") or ())))
    return messages


def answer(response_text: str, thinking: str, tool_calls_text: str) -> Message:
    """The logged answer as one assistant message."""
    calls = parse_json(tool_calls_text)
    return Message("assistant", response_text, _tool_calls(calls if isinstance(calls, list) else []),
                   note=thinking)


def curl_command(base_url: str, endpoint: str, request_body: str) -> str:
    """The original request as a curl command (the stored, redacted body)."""
    body = parse_json(request_body)
    data = orjson.dumps(body).decode() if body is not None else request_body
    return (f"curl {shlex.quote(base_url.rstrip('/') + endpoint)} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(data)}")
