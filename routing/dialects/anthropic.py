"""The Anthropic Messages dialect on `/v1/messages` (Claude Code's API): requests translated to OpenAI
chat requests for LM Studio, LM Studio's chunks translated to Anthropic's typed SSE events and message
objects. Pure, no I/O.

System text may come as `system` (a string or text blocks) and as `role: "system"` messages anywhere in
the list (Claude Code sends its environment block after the user turn); all of it becomes one leading
system message, in order, because many chat templates accept a system message only in first place.
"""
from __future__ import annotations

from typing import Any

import orjson

from routing.config.overrides import check_params
from routing.core.errors import BadRequest, ProxyError, error_body
from routing.core.exchange import Timing
from routing.dialects.base import (
    Dialect,
    ItemTranslator,
    ToolCallBuffer,
    function_tools,
    json_arguments,
    new_id,
    plain_content,
    sse_event,
    text_field,
)

DIALECT = Dialect("anthropic", "text/event-stream", sse_event)
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
SKIPPED_BLOCKS = ("thinking", "redacted_thinking")  # the model's own earlier reasoning: LM Studio takes none


def system_text(value: Any, where: str) -> str:
    """A `system` value (a string, or text blocks whose `cache_control` means nothing here) as text."""
    if value is None or isinstance(value, str):
        return value or ""
    if not isinstance(value, list):
        raise BadRequest(f"{where} must be a string or a list of text blocks")
    texts = []
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise BadRequest(f"{where}[{i}] must be a text block")
        texts.append(text_field(block.get("text"), f"{where}[{i}].text"))
    return "\n\n".join(t for t in texts if t)


def image_part(block: dict, where: str) -> dict:
    """An Anthropic image block as an OpenAI `image_url` part."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise BadRequest(f"{where}.source is required")
    if source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": text_field(source.get("url"), f"{where}.source.url")}}
    if source.get("type") != "base64":
        raise BadRequest(f"{where}.source.type must be base64 or url")
    media = source.get("media_type")
    if media not in IMAGE_TYPES:
        raise BadRequest(f"{where}.source.media_type must be one of {', '.join(IMAGE_TYPES)}")
    data = text_field(source.get("data"), f"{where}.source.data")
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}


def _tool_result(block: dict, where: str) -> tuple[dict, list[dict]]:
    """A `tool_result` block as an OpenAI tool message, and the images it carried (LM Studio's tool
    messages are text: images go to the user message that follows)."""
    call_id = text_field(block.get("tool_use_id"), f"{where}.tool_use_id")
    content, images = block.get("content"), []
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(text_field(part.get("text"), f"{where}.content[{k}].text"))
            elif kind == "image":
                images.append(image_part(part, f"{where}.content[{k}]"))
            else:
                raise BadRequest(f"{where}.content[{k}] must be a text or image block")
        content = "\n".join(texts)
    elif content is not None and not isinstance(content, str):
        raise BadRequest(f"{where}.content must be a string or a list of blocks")
    text = content or ""
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _tool_call(block: dict, where: str) -> dict:
    args = block.get("input", {})
    if not isinstance(args, dict):
        raise BadRequest(f"{where}.input must be an object")
    return {"id": text_field(block.get("id"), f"{where}.id"), "type": "function",
            "function": {"name": text_field(block.get("name"), f"{where}.name"), "arguments": orjson.dumps(args).decode()}}


def _message(msg: dict, where: str) -> list[dict]:
    """One user or assistant message as OpenAI messages: tool results first (each its own `tool`
    message, answering the assistant's calls just before), then the rest."""
    role, content = msg["role"], msg.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of content blocks")
    parts, calls, results = [], [], []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": text_field(block.get("text"), f"{at}.text")})
        elif kind == "image":
            parts.append(image_part(block, at))
        elif kind == "tool_use" and role == "assistant":
            calls.append(_tool_call(block, at))
        elif kind == "tool_result" and role == "user":
            result, images = _tool_result(block, at)
            results.append(result)
            parts.extend(images)
        elif kind not in SKIPPED_BLOCKS:
            raise BadRequest(f"{at}: content block type {kind!r} is not supported here")
    out = results
    if role == "assistant":
        converted: dict = {"role": "assistant", "content": plain_content(parts) if parts else ""}
        if calls:
            converted["tool_calls"] = calls
        out.append(converted)
    elif parts or not results:
        out.append({"role": "user", "content": plain_content(parts) if parts else ""})
    return out


def messages_to_openai(messages: Any) -> tuple[list[dict], list[str]]:
    """(the OpenAI messages, the system texts found among the messages)."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: a non-empty list of messages is required")
    out, systems = [], []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise BadRequest(f"{where} must be an object")
        if msg.get("role") == "system":
            systems.append(system_text(msg.get("content"), f"{where}.content"))
        elif msg.get("role") in ("user", "assistant"):
            out.extend(_message(msg, where))
        else:
            raise BadRequest(f"{where}.role must be user, assistant or system, got {msg.get('role')!r}")
    return out, systems


def tools_to_openai(tools: Any) -> list[dict]:
    """Client tools as OpenAI function tools; server tools (web search, bash, text editor: a `type`
    other than custom) cannot run in LM Studio and are left out."""
    return function_tools(tools, lambda tool: tool.get("type") in (None, "custom"), "input_schema")


def tool_choice(choice: Any) -> dict:
    """OpenAI's tool_choice (and parallel_tool_calls) for Anthropic's."""
    if choice is None:
        return {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(kind)
    if kind == "tool":
        mapped = {"type": "function", "function": {"name": text_field(choice.get("name"), "tool_choice.name")}}
    if mapped is None:
        raise BadRequest("tool_choice.type must be auto, any, tool or none")
    out = {"tool_choice": mapped}
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
    return out


def reasoning(body: dict) -> tuple[dict, bool]:
    """(LM Studio parameters for `thinking` and `output_config.effort`, whether to pass reasoning on)."""
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if thinking is not None and kind not in ("enabled", "disabled", "adaptive"):
        raise BadRequest("thinking.type must be enabled, disabled or adaptive")
    params = {}
    budget = thinking.get("budget_tokens") if kind == "enabled" else None
    if isinstance(budget, int) and not isinstance(budget, bool):
        params["reasoning_effort"] = "low" if budget < 8192 else "medium" if budget < 24576 else "high"
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    if effort in EFFORTS:
        params["reasoning_effort"] = EFFORTS[effort]
    return params, kind != "disabled"


def to_openai(body: dict) -> dict:
    """An Anthropic Messages request as an OpenAI chat completion request (always streamed upstream)."""
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise BadRequest("max_tokens: field required")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest("max_tokens must be a positive integer")
    messages, systems = messages_to_openai(body.get("messages"))
    system = "\n\n".join(t for t in [system_text(body.get("system"), "system"), *systems] if t)
    out: dict = {"messages": ([{"role": "system", "content": system}] if system else []) + messages,
                 "max_tokens": max_tokens}
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences") is not None:
        out["stop"] = body["stop_sequences"]
    check_params(out)
    tools = tools_to_openai(body.get("tools"))
    if tools:
        out["tools"] = tools
        out.update(tool_choice(body.get("tool_choice")))
    else:
        tool_choice(body.get("tool_choice"))  # still checked
    out.update(reasoning(body)[0])
    out.update(stream=True, stream_options={"include_usage": True})
    return out


def translator(model: str, body: dict) -> "Translator":
    return Translator(model, thinking=reasoning(body)[1])


class Translator(ItemTranslator):
    """LM Studio's chat chunks as Anthropic's stream: `message_start`, content blocks (thinking, text,
    tool_use) opened, filled and closed in order, `message_delta` with the stop reason, `message_stop`."""

    def __init__(self, model: str, thinking: bool = True):
        super().__init__(thinking)
        self.model = model
        self.id = new_id("msg_")
        self._block: object = None   # what the open block holds: "text", "thinking" or a tool index
        self._index = -1             # the open block's index

    def _message(self, content: list, stop_reason: str | None) -> dict:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                "usage": {"input_tokens": self.answer.prompt_tokens or 0,
                          "output_tokens": self.answer.completion_tokens or 0}}

    def opening(self) -> list[dict]:
        return [{"type": "message_start", "message": self._message([], None)}, {"type": "ping"}]

    def _close(self) -> list[dict]:
        if self._block is None:
            return []
        self._block = None
        return [{"type": "content_block_stop", "index": self._index}]

    def _into(self, block: object, start: dict) -> list[dict]:
        """Events that make `block` the open one (closing the previous), or none if it is already."""
        if self._block == block:
            return []
        out = self._close()
        self._block, self._index = block, self._index + 1
        return out + [{"type": "content_block_start", "index": self._index, "content_block": start}]

    def _delta(self, delta: dict) -> dict:
        return {"type": "content_block_delta", "index": self._index, "delta": delta}

    def thinking_delta(self, text: str) -> list[dict]:
        return self._into("thinking", {"type": "thinking", "thinking": "", "signature": ""}) + [
            self._delta({"type": "thinking_delta", "thinking": text})]

    def text_delta(self, text: str) -> list[dict]:
        return self._into("text", {"type": "text", "text": ""}) + [self._delta({"type": "text_delta", "text": text})]

    def tool_delta(self, index: int, call: ToolCallBuffer, piece: str) -> list[dict]:
        call.id = call.id or new_id("toolu_")
        out = self._into(("tool", index), {"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
        if piece:
            out.append(self._delta({"type": "input_json_delta", "partial_json": piece}))
        return out

    def stop_reason(self) -> str:
        if self.answer.tool_calls:
            return "tool_use"
        return STOP_REASONS.get(self.answer.finish_reason or "stop", "end_turn")

    def finish(self, timing: Timing) -> list[dict]:
        usage = {"input_tokens": self.answer.prompt_tokens or 0, "output_tokens": self.answer.completion_tokens or 0}
        return self.started() + self._close() + [
            {"type": "message_delta", "delta": {"stop_reason": self.stop_reason(), "stop_sequence": None},
             "usage": usage},
            {"type": "message_stop"}]

    def failed(self, exc: ProxyError) -> list[dict]:
        """An `error` event: the SDK raises on it, and no `message_stop` follows."""
        return [error_body(exc, DIALECT.name)]

    def whole(self, timing: Timing) -> dict:
        answer, content = self.answer, []
        if answer.thinking:
            content.append({"type": "thinking", "thinking": "".join(answer.thinking), "signature": ""})
        if answer.text:
            content.append({"type": "text", "text": answer.text})
        content += [_tool_use(call) for call in answer.ordered_calls()]
        return self._message(content, self.stop_reason())


def _tool_use(call: ToolCallBuffer) -> dict:
    return {"type": "tool_use", "id": call.id or new_id("toolu_"), "name": call.name,
            "input": json_arguments(call.arguments_text)}
