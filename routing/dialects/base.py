"""What every dialect shares: how a stream is framed, the shape of a translator, and the answer a
translator assembles (which is also what the request log keeps).

A dialect module (`ollama`, `openai_chat`, `responses`, `anthropic`) answers the same questions with
the same names: `DIALECT` (its name, framing and defaults), request builders (client body -> the
OpenAI-shaped body LM Studio gets), a `Translator` (LM Studio's chat chunks -> the client's chunks,
the whole answer, the chunks that end a failed stream). Error bodies are `routing.core.errors.error_body`.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import orjson

from routing.core.errors import BadRequest, ProxyError
from routing.core.exchange import Timing


@dataclass(frozen=True)
class Dialect:
    """How one client dialect frames a stream, and what its requests default to."""

    name: str                         # also the request log's `api`
    content_type: str                 # of a streamed answer
    frame: Callable[[dict], bytes]
    end: bytes = b""                  # written after the last chunk of a successful stream
    stream_by_default: bool = False   # what a request without `stream` gets


def ndjson(obj: dict) -> bytes:
    return orjson.dumps(obj) + b"\n"


def sse_data(obj: dict) -> bytes:
    """An SSE frame with data only (OpenAI chat completions)."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def sse_event(obj: dict) -> bytes:
    """An SSE frame named by the object's `type` (Anthropic Messages, OpenAI Responses)."""
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class Translator(Protocol):
    """Turns LM Studio's OpenAI chat chunks into one client's chunks; holds a stream's state."""

    answer: "Answer"

    def feed(self, event: dict) -> list[dict]:
        """The client chunks for one upstream chunk (often one, sometimes none)."""

    def finish(self, timing: Timing) -> list[dict]:
        """The chunks that end a complete stream."""

    def failed(self, exc: ProxyError) -> list[dict]:
        """The chunks that end a stream that failed after it started (never a success marker)."""

    def whole(self, timing: Timing) -> dict:
        """The non-streamed answer, once every upstream chunk was fed."""


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def require_model(body: dict) -> str:
    """The requested model name (`model`, or `name` as older Ollama clients send it)."""
    model = body.get("model") or body.get("name")
    if model is None:
        raise BadRequest("model is required")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("model must be a non-empty string")
    return model


def json_arguments(text: str) -> dict:
    """A tool call's streamed `arguments` string as the object clients expect ({} when unreadable)."""
    text = text.strip()
    try:
        args = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}
    return args if isinstance(args, dict) else {"value": args}


@dataclass
class ToolCallBuffer:
    """One streamed tool call, put together from its fragments."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    @property
    def arguments_text(self) -> str:
        return "".join(self.arguments)

    def as_ollama(self) -> dict:
        return {"id": self.id, "function": {"name": self.name, "arguments": json_arguments(self.arguments_text)}}


@dataclass
class Answer:
    """What the model said, assembled from a stream (also what the request log keeps)."""

    content: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    tool_calls: dict[int, ToolCallBuffer] = field(default_factory=dict)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def text(self) -> str:
        return "".join(self.content)

    def add_delta(self, delta: dict, thinking: bool = True) -> tuple[str, str, list[tuple[int, ToolCallBuffer, str]]]:
        """Record one chunk's delta, its reasoning only when `thinking` (the client may turn it off);
        returns its content, its reasoning and its tool-call fragments (`add_tool_fragment`'s)."""
        text = delta.get("content") or ""
        thought = (delta.get("reasoning") or delta.get("reasoning_content") or "") if thinking else ""
        if text:
            self.content.append(text)
        if thought:
            self.thinking.append(thought)
        return text, thought, [self.add_tool_fragment(frag) for frag in delta.get("tool_calls") or ()]

    def add_tool_fragment(self, frag: dict) -> tuple[int, ToolCallBuffer, str]:
        """Record one streamed tool-call fragment; returns (its index, its call, the arguments piece)."""
        index = frag.get("index", len(self.tool_calls))
        buf = self.tool_calls.setdefault(index, ToolCallBuffer())
        buf.id = frag.get("id") or buf.id
        fn = frag.get("function") or {}
        buf.name = fn.get("name") or buf.name
        piece = fn.get("arguments") or ""
        if piece:
            buf.arguments.append(piece)
        return index, buf, piece

    def add_usage(self, usage: dict | None):
        if usage:
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)

    def ordered_calls(self) -> list[ToolCallBuffer]:
        return [self.tool_calls[i] for i in sorted(self.tool_calls)]

    def ollama_tool_calls(self) -> list[dict]:
        return [call.as_ollama() for call in self.ordered_calls()]


def text_field(value: Any, where: str) -> str:
    """A field that must be a string, or a BadRequest naming it."""
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a string")
    return value


def plain_content(parts: list[dict]) -> str | list[dict]:
    """OpenAI content parts: text-only content as one string (every chat template takes that)."""
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def function_tools(tools: Any, runs: Callable[[dict], bool], schema_key: str,
                   default_schema: dict | None = None) -> list[dict]:
    """A client's tool list as OpenAI function tools: only the tools for which `runs(tool)` (those the
    client itself runs: hosted and server tools cannot run in LM Studio and are left out), with their
    JSON schema under `schema_key` (required unless there is a `default_schema`)."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools[{i}] must be an object")
        if not runs(tool):
            continue
        schema = tool.get(schema_key, default_schema)
        if not isinstance(schema, dict):
            raise BadRequest(f"tools[{i}].{schema_key} must be an object")
        fn = {"name": text_field(tool.get("name"), f"tools[{i}].name"), "parameters": schema}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out


class ItemTranslator:
    """The shared half of translators whose streams are typed items opened, filled and closed in order
    (Anthropic's content blocks, Responses' output items): it reads LM Studio's deltas into the answer
    and asks the subclass for the events of each piece: `opening()` once, then `thinking_delta(text)`,
    `text_delta(text)` and `tool_delta(index, call, piece)`."""

    def __init__(self, thinking: bool = True):
        self.thinking = thinking  # False: the client turned reasoning off, it is not passed on
        self.answer = Answer()
        self._started = False

    def opening(self) -> list[dict]:
        raise NotImplementedError

    def started(self) -> list[dict]:
        """The opening events the first time, nothing after."""
        if self._started:
            return []
        self._started = True
        return self.opening()

    def feed(self, event: dict) -> list[dict]:
        self.answer.add_usage(event.get("usage"))
        out = self.started()
        for choice in event.get("choices") or ():
            text, thought, fragments = self.answer.add_delta(choice.get("delta") or choice.get("message") or {},
                                                             self.thinking)
            if thought:
                out += self.thinking_delta(thought)
            if text:
                out += self.text_delta(text)
            for fragment in fragments:
                out += self.tool_delta(*fragment)
            if choice.get("finish_reason"):
                self.answer.finish_reason = choice["finish_reason"]
        return out


def strict_bool(body: dict, name: str, default: Any = None) -> Any:
    """A field that must be true or false when present (a string "false" is not false)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value
