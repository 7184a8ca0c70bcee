"""The Ollama dialect on `/api/chat` and `/api/generate`: requests translated to OpenAI-shaped LM Studio
requests, LM Studio's chunks translated back to Ollama's NDJSON chunks. Pure, no I/O.

Validation happens here too, so a bad field is a `BadRequest` naming the field, never a 500.
"""
from __future__ import annotations

import binascii
import time
from datetime import datetime, timezone
from typing import Any

import orjson

from routing.config.durations import parse_duration, ttl_seconds
from routing.config.overrides import OLLAMA_NAMES, check_params, options_to_params
from routing.core.errors import BadRequest, ProxyError, error_body
from routing.core.exchange import Timing
from routing.dialects.base import Answer, Dialect, ndjson
from routing.dialects.logprobs import logprob_params, ollama_logprobs

DIALECT = Dialect("ollama", "application/x-ndjson", ndjson, stream_by_default=True)

ROLES = ("system", "user", "assistant", "tool")
# Ollama's think levels -> OpenAI's reasoning_effort ("max": the highest LM Studio takes)
THINK_LEVELS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def keep_alive_ttl(body: dict) -> tuple[bool, int | None]:
    """(whether the client sent `keep_alive`, the LM Studio ttl it means; None = forever)."""
    if body.get("keep_alive") is None:
        return False, None
    try:
        seconds = parse_duration(body["keep_alive"])
    except ValueError as exc:
        raise BadRequest(f"keep_alive: {exc}") from None
    return True, ttl_seconds(seconds)


def lifecycle_action(kind: str, body: dict) -> str | None:
    """Ollama's model lifecycle requests: an empty chat or generate loads the model ("load"), and
    unloads it ("unload") when `keep_alive` is 0. None for an ordinary request."""
    if kind == "chat":
        empty = not body.get("messages")
    elif kind == "generate":
        empty = not body.get("prompt") and not body.get("images")
    else:
        return None
    options(body)  # a load request's options are checked like any request's
    if not empty:
        return None
    sent, _ = keep_alive_ttl(body)  # validates keep_alive
    return "unload" if sent and parse_duration(body["keep_alive"]) == 0 else "load"


def chat_lifecycle(body: dict) -> str | None:
    return lifecycle_action("chat", body)


def generate_lifecycle(body: dict) -> str | None:
    return lifecycle_action("generate", body)


def think_params(think: Any) -> dict:
    """LM Studio parameters for Ollama's `think`. Levels become OpenAI's `reasoning_effort`, which
    LM Studio's /v1/chat/completions accepts; true/false have no request equivalent (false is honoured
    by dropping the reasoning from the answer)."""
    if think is None or isinstance(think, bool):
        return {}
    if isinstance(think, str) and think in THINK_LEVELS:
        return {"reasoning_effort": THINK_LEVELS[think]}
    raise BadRequest('think must be true, false, "low", "medium", "high" or "max"')


def image_part(data: Any, where: str) -> dict:
    """An OpenAI `image_url` content part for one base64 image, MIME type sniffed from its bytes."""
    if not isinstance(data, str):
        raise BadRequest(f"{where}: images must be base64 strings")
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = binascii.a2b_base64(data.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise BadRequest(f"{where}: not valid base64") from None
    if not raw:
        raise BadRequest(f"{where}: empty image")
    mime = next((m for magic, m in _MAGIC if raw.startswith(magic)), None)
    if mime is None and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None:
        raise BadRequest(f"{where}: not a PNG, JPEG, GIF, WebP or BMP image")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def _content(text: Any, images: Any, where: str):
    if text is not None and not isinstance(text, str):
        raise BadRequest(f"{where}.content must be a string")
    if not images:
        return text or ""
    if not isinstance(images, list):
        raise BadRequest(f"{where}.images must be a list of base64 strings")
    parts = [{"type": "text", "text": text}] if text else []
    return parts + [image_part(img, f"{where}.images[{i}]") for i, img in enumerate(images)]


def _tool_calls(calls: Any, where: str, index: int) -> list[dict]:
    if not isinstance(calls, list):
        raise BadRequest(f"{where}.tool_calls must be a list")
    out = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(f"{where}.tool_calls[{j}].function.name is required")
        args = fn.get("arguments") or {}
        if not isinstance(args, (dict, str)):
            raise BadRequest(f"{where}.tool_calls[{j}].function.arguments must be an object")
        out.append({
            "id": call.get("id") or f"call_{index}_{j}",
            "type": "function",
            "function": {"name": fn["name"],
                         "arguments": args if isinstance(args, str) else orjson.dumps(args).decode()},
        })
    return out


def ollama_messages_to_openai(messages: Any) -> list[dict]:
    """Ollama chat messages as OpenAI messages: images as content parts, tool calls with string
    arguments, and tool results matched to the assistant call they answer by `tool_call_id`."""
    if not isinstance(messages, list):
        raise BadRequest("messages must be a list")
    out: list[dict] = []
    pending: list[dict] = []  # tool calls not answered yet, oldest first
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise BadRequest(f"{where} must be an object")
        role = msg.get("role")
        if role not in ROLES:
            raise BadRequest(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        converted: dict = {"role": role, "content": _content(msg.get("content"), msg.get("images"), where)}
        if role == "assistant" and msg.get("tool_calls"):
            converted["tool_calls"] = _tool_calls(msg["tool_calls"], where, i)
            pending = list(converted["tool_calls"])
        if role == "tool":
            converted["tool_call_id"] = _answered_call(pending, msg.get("tool_name") or msg.get("name"),
                                                       msg.get("tool_call_id"), i)
        out.append(converted)
    return out


def _answered_call(pending: list[dict], name: Any, explicit: Any, index: int) -> str:
    if isinstance(explicit, str) and explicit:
        pending[:] = [c for c in pending if c["id"] != explicit]
        return explicit
    for call in pending:
        if name is None or call["function"]["name"] == name:
            pending.remove(call)
            return call["id"]
    return f"call_{index}"


def response_format(fmt: Any) -> dict | None:
    """OpenAI `response_format` for Ollama's `format` ("json" or a JSON schema)."""
    if fmt in (None, ""):
        return None
    if fmt == "json":
        schema: dict = {"type": "object"}
    elif isinstance(fmt, dict):
        schema = fmt
    else:
        raise BadRequest("format must be \"json\" or a JSON schema object")
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": True}}


def options(body: dict) -> dict:
    """The request's `options` (Modelfile parameters), which must be an object when sent."""
    value = body.get("options")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("options must be an object")
    return value


def _common(body: dict, completion: bool = False) -> dict:
    out = options_to_params(options(body))
    out.update(logprob_params(body, completion))
    check_params(out, "options: ", OLLAMA_NAMES)
    fmt = response_format(body.get("format"))
    if fmt:
        out["response_format"] = fmt
    out.update(think_params(body.get("think")))
    out["stream"] = True
    out["stream_options"] = {"include_usage": True}
    return out


def chat_to_openai(body: dict) -> dict:
    """An Ollama /api/chat body as an OpenAI chat completion request (always streamed upstream)."""
    out = _common(body)
    out["messages"] = ollama_messages_to_openai(body.get("messages") or [])
    tools = body.get("tools")
    if tools:
        out["tools"] = openai_tools(tools)
    return out


def openai_tools(tools: Any) -> list[dict]:
    """Ollama `tools` as OpenAI function tools (`type` defaults to "function", as Ollama's does)."""
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(f"tools[{i}].function.name is required")
        out.append({**tool, "type": tool.get("type") or "function"})
    return out


def generate_to_openai(body: dict) -> dict:
    """An Ollama /api/generate body as an OpenAI request (always streamed upstream): a chat completion,
    or with `raw` a text completion of the prompt as it is (`generate_upstream_path` tells which)."""
    prompt = _string_field(body, "prompt") or ""
    system = _string_field(body, "system")
    if _string_field(body, "suffix"):
        # Ollama answers the same for a model without the `insert` capability; LM Studio has no
        # fill-in-the-middle API, so /api/show never announces it.
        raise BadRequest("suffix: this model does not support insert (fill-in-the-middle)")
    if body.get("raw") is not None and not isinstance(body["raw"], bool):
        raise BadRequest("raw must be true or false")
    out = _common(body, completion=bool(body.get("raw")))
    if body.get("raw"):
        if body.get("images"):
            raise BadRequest("images cannot be sent with raw: LM Studio completes raw prompts as text only")
        out["prompt"] = prompt
        return out
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": _content(prompt, body.get("images"), "request")})
    out["messages"] = messages
    return out


def generate_upstream_path(built: dict) -> str:
    """Where a translated /api/generate body goes: raw prompts to the text completions endpoint."""
    return "/v1/completions" if "prompt" in built else "/v1/chat/completions"


def _string_field(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


# --- LM Studio's chunks as Ollama's -------------------------------------------------------------

_DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop"}


def lifecycle_answer(model: str, kind: str, reason: str) -> dict:
    """Ollama's answer to an empty chat/generate request: `done_reason` "load" or "unload"."""
    answer = {"model": model, "created_at": now_iso()}
    if kind == "chat":
        answer["message"] = {"role": "assistant", "content": ""}
    else:
        answer["response"] = ""
    return {**answer, "done": True, "done_reason": reason}


_stamp: tuple[int, str] = (-1, "")  # (the millisecond, `now_iso()` then)


def now_iso() -> str:
    """Ollama's `created_at`: RFC 3339 in UTC. Formatted at most once per millisecond, for every stream
    in the process: formatting it for each token of a thousand streams cost 4% of the CPU (py-spy)."""
    global _stamp
    ms = time.time_ns() // 1_000_000
    if ms != _stamp[0]:
        _stamp = (ms, datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"))
    return _stamp[1]


def chat_translator(model: str, body: dict) -> "Translator":
    return Translator(model, "chat", thinking=body.get("think") is not False, logprobs=bool(body.get("logprobs")))


def generate_translator(model: str, body: dict) -> "Translator":
    return Translator(model, "generate", thinking=body.get("think") is not False,
                      logprobs=bool(body.get("logprobs")))


class Translator:
    """Turns OpenAI chat chunks into Ollama `/api/chat` (kind="chat") or `/api/generate` chunks; with
    `logprobs`, each chunk carries the log probabilities of its tokens, the whole answer all of them."""

    def __init__(self, model: str, kind: str = "chat", thinking: bool = True, logprobs: bool = False):
        self.model = model
        self.kind = kind
        self.thinking = thinking  # False (the client sent `think: false`): reasoning is not passed on
        self.answer = Answer()
        self._calls_sent = False
        self.logprobs = [] if logprobs else None  # every entry so far (None: not asked for)
        self._unsent = 0  # how many of them no chunk carried yet

    def _chunk(self, content: str, thinking: str = "", tool_calls: list | None = None) -> dict:
        if self.kind == "chat":
            message: dict = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            if tool_calls:
                message["tool_calls"] = tool_calls
            chunk = {"model": self.model, "created_at": now_iso(), "message": message, "done": False}
        else:
            chunk = {"model": self.model, "created_at": now_iso(), "response": content, "done": False}
            if thinking:
                chunk["thinking"] = thinking
        if self._unsent:  # the log probabilities of the tokens this chunk carries
            chunk["logprobs"], self._unsent = self.logprobs[-self._unsent:], 0
        return chunk

    def feed(self, event: dict) -> list[dict]:
        """Ollama chunks for one upstream chunk (often one, sometimes none)."""
        self.answer.add_usage(event.get("usage"))
        out = []
        for choice in event.get("choices") or ():
            # chat chunks carry a delta, whole answers a message, text completions (raw) `text`
            delta = choice.get("delta") or choice.get("message") or {"content": choice.get("text")}
            text, thought, _ = self.answer.add_delta(delta, self.thinking)
            if self.logprobs is not None and (entries := ollama_logprobs(choice)):
                self.logprobs += entries
                self._unsent += len(entries)
            if text or thought:
                out.append(self._chunk(text, thought))
            if choice.get("finish_reason"):
                self.answer.finish_reason = choice["finish_reason"]
                out.extend(self._flush_tool_calls())
        return out

    def _flush_tool_calls(self) -> list[dict]:
        if self._calls_sent or not self.answer.tool_calls or self.kind != "chat":
            return []
        self._calls_sent = True
        return [self._chunk("", tool_calls=self.answer.ollama_tool_calls())]

    def finish(self, timing: Timing) -> list[dict]:
        """The closing chunks: any tool calls not yet sent, then the final chunk with metrics."""
        out = self._flush_tool_calls()
        final = self._chunk("")
        final.update(done=True, done_reason=_DONE_REASONS.get(self.answer.finish_reason or "stop", "stop"),
                     **self.metrics(timing))
        out.append(final)
        return out

    def failed(self, exc: ProxyError) -> list[dict]:
        """A last `{"error": ...}` line: the Ollama client raises on it."""
        return [error_body(exc, DIALECT.name)]

    def metrics(self, timing: Timing) -> dict:
        """Ollama's final-chunk metrics in nanoseconds, from LM Studio's usage and measured timing."""
        return {
            "total_duration": timing.total_ns(),
            "load_duration": 0,
            "prompt_eval_count": self.answer.prompt_tokens or 0,
            "prompt_eval_duration": timing.first_token_ns(),
            "eval_count": self.answer.completion_tokens or 0,
            "eval_duration": timing.generation_ns(),
        }

    def whole(self, timing: Timing) -> dict:
        """The non-streamed response: the whole answer in one object with the final metrics."""
        final = self.finish(timing)[-1]
        if self.logprobs:
            final["logprobs"] = self.logprobs
        answer = self.answer
        if self.kind == "chat":
            message = {"role": "assistant", "content": answer.text}
            if answer.thinking:
                message["thinking"] = "".join(answer.thinking)
            if answer.tool_calls:
                message["tool_calls"] = answer.ollama_tool_calls()
            final["message"] = message
        else:
            final["response"] = answer.text
            if answer.thinking:
                final["thinking"] = "".join(answer.thinking)
        return final
