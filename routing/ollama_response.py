"""OpenAI stream chunks from LM Studio translated into Ollama chat/generate chunks.

`OllamaTranslator` holds the little state a stream needs (tool-call fragments, usage, the assembled
answer) and does no I/O: the relay feeds it parsed chunks and frames what it returns.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

from .exchange import Timing

_DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop"}


def lifecycle_answer(model: str, kind: str, reason: str) -> dict:
    """Ollama's answer to an empty chat/generate request: `done_reason` "load" or "unload"."""
    answer = {"model": model, "created_at": now_iso()}
    if kind == "chat":
        answer["message"] = {"role": "assistant", "content": ""}
    else:
        answer["response"] = ""
    return {**answer, "done": True, "done_reason": reason}


def now_iso() -> str:
    """Ollama's `created_at`: RFC 3339 in UTC."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class ToolCallBuffer:
    """One streamed tool call, put together from its fragments."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def as_ollama(self) -> dict:
        text = "".join(self.arguments).strip()
        try:
            args = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            args = {}
        if not isinstance(args, dict):
            args = {"value": args}
        return {"id": self.id, "function": {"name": self.name, "arguments": args}}


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

    def add_delta(self, delta: dict) -> tuple[str, str]:
        """Record one chunk's delta; returns its (content, thinking) text."""
        text = delta.get("content") or ""
        thought = delta.get("reasoning") or delta.get("reasoning_content") or ""
        if text:
            self.content.append(text)
        if thought:
            self.thinking.append(thought)
        for frag in delta.get("tool_calls") or ():
            buf = self.tool_calls.setdefault(frag.get("index", len(self.tool_calls)), ToolCallBuffer())
            buf.id = frag.get("id") or buf.id
            fn = frag.get("function") or {}
            buf.name = fn.get("name") or buf.name
            if fn.get("arguments"):
                buf.arguments.append(fn["arguments"])
        return text, thought

    def add_usage(self, usage: dict | None):
        if usage:
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)

    def ollama_tool_calls(self) -> list[dict]:
        return [self.tool_calls[i].as_ollama() for i in sorted(self.tool_calls)]


class OllamaTranslator:
    """Turns OpenAI chat chunks into Ollama `/api/chat` (kind="chat") or `/api/generate` chunks."""

    def __init__(self, model: str, kind: str = "chat", thinking: bool = True):
        self.model = model
        self.kind = kind
        self.thinking = thinking  # False (the client sent `think: false`): reasoning is not passed on
        self.answer = Answer()
        self._calls_sent = False
        self._stamp_ms, self._stamp = -1, ""

    def _created_at(self) -> str:
        """`now_iso()`, formatted at most once per millisecond: a 2000-token burst would otherwise
        spend more time formatting timestamps than translating."""
        ms = time.time_ns() // 1_000_000
        if ms != self._stamp_ms:
            self._stamp_ms, self._stamp = ms, now_iso()
        return self._stamp

    def _chunk(self, content: str, thinking: str = "", tool_calls: list | None = None) -> dict:
        if self.kind == "chat":
            message: dict = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            if tool_calls:
                message["tool_calls"] = tool_calls
            return {"model": self.model, "created_at": self._created_at(), "message": message,
                    "done": False}
        chunk = {"model": self.model, "created_at": self._created_at(), "response": content, "done": False}
        if thinking:
            chunk["thinking"] = thinking
        return chunk

    def feed(self, event: dict) -> list[dict]:
        """Ollama chunks for one upstream chunk (often one, sometimes none)."""
        self.answer.add_usage(event.get("usage"))
        out = []
        for choice in event.get("choices") or ():
            # chat chunks carry a delta, whole answers a message, text completions (raw) `text`
            delta = choice.get("delta") or choice.get("message") or {"content": choice.get("text")}
            if not self.thinking:
                delta = {k: v for k, v in delta.items() if k not in ("reasoning", "reasoning_content")}
            text, thought = self.answer.add_delta(delta)
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
