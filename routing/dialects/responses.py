"""The OpenAI Responses dialect on `/v1/responses` (Codex CLI's API), stateless as Ollama's: requests
translated to OpenAI chat requests for LM Studio, LM Studio's chunks translated to Responses' typed SSE
events and response objects. Pure, no I/O.

`instructions` and developer/system items become one leading system message (many chat templates
accept a system message only in first place); nothing is stored, so `previous_response_id` is refused.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from routing.config.overrides import check_params
from routing.core.errors import BadRequest, ProxyError
from routing.core.exchange import Timing
from routing.dialects.base import (
    Dialect,
    ItemTranslator,
    ToolCallBuffer,
    function_tools,
    new_id,
    plain_content,
    sse_event,
    text_field,
)

DIALECT = Dialect("responses", "text/event-stream", sse_event)
EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
# Items the client may send back that LM Studio has no use for (server-side tools, earlier reasoning).
SKIPPED_ITEMS = ("reasoning", "web_search_call", "file_search_call", "image_generation_call",
                 "code_interpreter_call", "mcp_list_tools", "mcp_call", "mcp_approval_request")
ECHOED = ("instructions", "max_output_tokens", "temperature", "top_p", "tool_choice", "tools",
          "parallel_tool_calls", "metadata", "text", "reasoning", "store", "prompt_cache_key")


def _parts(content: Any, where: str) -> list[dict]:
    """A message's content (a string or typed parts) as OpenAI chat parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise BadRequest(f"{where} must be a string or a list of content parts")
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "summary_text"):
            parts.append({"type": "text", "text": text_field(part.get("text"), f"{where}[{i}].text")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": text_field(part.get("refusal"), f"{where}[{i}].refusal")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise BadRequest(f"{where}[{i}].image_url must be a URL or data URL (file ids need stored files)")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise BadRequest(f"{where}[{i}]: content part type {kind!r} is not supported here")
    return parts


def _output_text(output: Any, where: str) -> str:
    """A function_call_output's `output`: a string, or parts whose texts are joined."""
    if isinstance(output, str):
        return output
    parts = _parts(output, where)
    return "\n".join(p["text"] for p in parts if p["type"] == "text")


def input_to_messages(items: Any) -> tuple[list[dict], list[str]]:
    """(the OpenAI messages, the system texts) for a Responses `input`."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}], []
    if not isinstance(items, list) or not items:
        raise BadRequest("input must be a string or a non-empty list of items")
    out, systems = [], []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            parts = _parts(item.get("content"), f"{where}.content")
            if role in ("developer", "system"):
                systems.append(plain_content([p for p in parts if p["type"] == "text"]) or "")
            elif role in ("user", "assistant"):
                out.append({"role": role, "content": plain_content(parts)})
            else:
                raise BadRequest(f"{where}.role must be user, assistant, system or developer, got {role!r}")
        elif kind == "function_call":
            call = {"id": text_field(item.get("call_id"), f"{where}.call_id"), "type": "function",
                    "function": {"name": text_field(item.get("name"), f"{where}.name"),
                                 "arguments": text_field(item.get("arguments", "{}"), f"{where}.arguments")}}
            if out and out[-1]["role"] == "assistant":
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": text_field(item.get("call_id"), f"{where}.call_id"),
                        "content": _output_text(item.get("output"), f"{where}.output")})
        elif kind == "item_reference":
            raise BadRequest(f"{where}: item references need stored responses; this server is stateless")
        elif kind not in SKIPPED_ITEMS:
            raise BadRequest(f"{where}: item type {kind!r} is not supported here")
    return out, systems


def tools_to_openai(tools: Any) -> list[dict]:
    """Function tools as chat tools; hosted or namespaced tools (web_search, namespace, mcp, custom)
    cannot run in LM Studio and are left out."""
    return function_tools(tools, lambda tool: tool.get("type") == "function", "parameters",
                          {"type": "object", "properties": {}})


def tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": text_field(choice.get("name"), "tool_choice.name")}}
    return None  # hosted-tool and allowed-tools choices: the model chooses


def text_format(text: Any) -> dict | None:
    """`text.format` as chat's `response_format` (LM Studio takes JSON schemas)."""
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise BadRequest("text.format.schema must be an object")
        return {"type": "json_schema", "json_schema": {"name": fmt.get("name") or "response",
                                                       "schema": fmt["schema"], "strict": bool(fmt.get("strict"))}}
    if kind == "json_object":
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}}
    return None


def effort(body: dict) -> str | None:
    reasoning = body.get("reasoning")
    return reasoning.get("effort") if isinstance(reasoning, dict) else None


def to_openai(body: dict) -> dict:
    """A Responses request as an OpenAI chat completion request (always streamed upstream)."""
    if body.get("previous_response_id") is not None:
        raise BadRequest("previous_response_id is not supported: this server is stateless (as Ollama's "
                         "/v1/responses); send the whole conversation in input, with store: false")
    messages, systems = input_to_messages(body.get("input"))
    instructions = body.get("instructions")
    system = "\n\n".join(t for t in [instructions and text_field(instructions, "instructions"), *systems] if t)
    out: dict = {"messages": ([{"role": "system", "content": system}] if system else []) + messages}
    for name, param in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(name) is not None:
            out[param] = body[name]
    check_params(out, names={"max_tokens": "max_output_tokens"})
    if tools := tools_to_openai(body.get("tools")):
        out["tools"] = tools
        if (choice := tool_choice(body.get("tool_choice"))) is not None:
            out["tool_choice"] = choice
    if fmt := text_format(body.get("text")):
        out["response_format"] = fmt
    if effort(body) in EFFORTS:
        out["reasoning_effort"] = EFFORTS[effort(body)]
    out.update(stream=True, stream_options={"include_usage": True})
    return out


def translator(model: str, body: dict) -> "Translator":
    return Translator(model, {k: body[k] for k in ECHOED if k in body}, thinking=effort(body) != "none")


class Translator(ItemTranslator):
    """LM Studio's chat chunks as a Responses stream: `response.created`, output items (reasoning,
    message, function_call) added, filled and done in order, then `response.completed` (or
    `response.incomplete` when cut at max_output_tokens). Every event has its `sequence_number`."""

    def __init__(self, model: str, echo: dict, thinking: bool = True):
        super().__init__(thinking)
        self.model, self.echo = model, echo
        self.id, self.created_at = new_id("resp_"), int(time.time())
        self._seq = 0
        self._done: list[dict] = []       # finished output items
        self._key: object = None          # what the open item holds: "reasoning", "message" or a tool index
        self._item: dict = {}

    def _event(self, kind: str, **fields) -> dict:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def response(self, status: str, output: list[dict], **extra) -> dict:
        p, c = self.answer.prompt_tokens or 0, self.answer.completion_tokens or 0
        usage = {"input_tokens": p, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": c,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": p + c}
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "model": self.model, "output": output, "output_text": self.answer.text, "error": None,
                "incomplete_details": None, "parallel_tool_calls": True, "tools": [], "tool_choice": "auto",
                **self.echo, "usage": usage if status != "in_progress" else None, **extra}

    def opening(self) -> list[dict]:
        return [self._event("response.created", response=self.response("in_progress", [])),
                self._event("response.in_progress", response=self.response("in_progress", []))]

    def _at(self) -> dict:
        return {"item_id": self._item["id"], "output_index": len(self._done)}

    def _into(self, key: object, new_item: Callable[[], dict]) -> list[dict]:
        """Events that make a `new_item()` the open output item (finishing the previous one), unless the
        item for `key` is open already (then nothing: the item, and its id, is made once, not per token)."""
        if self._key == key:
            return []
        out = self._close()
        item = new_item()
        self._key, self._item = key, item
        out.append(self._event("response.output_item.added", output_index=len(self._done), item=dict(item)))
        if item["type"] == "reasoning":
            out.append(self._event("response.reasoning_summary_part.added", **self._at(), summary_index=0,
                                   part={"type": "summary_text", "text": ""}))
        elif item["type"] == "message":
            out.append(self._event("response.content_part.added", **self._at(), content_index=0,
                                   part={"type": "output_text", "text": "", "annotations": []}))
        return out

    def _close(self) -> list[dict]:
        """The events that finish the open item, which joins the output."""
        if self._key is None:
            return []
        item, out = self._item, []
        if item["type"] == "reasoning":
            text = item.pop("_text")
            part = {"type": "summary_text", "text": text}
            out += [self._event("response.reasoning_summary_text.done", **self._at(), summary_index=0, text=text),
                    self._event("response.reasoning_summary_part.done", **self._at(), summary_index=0, part=part)]
            item["summary"] = [part]
        elif item["type"] == "message":
            part = {"type": "output_text", "text": item.pop("_text"), "annotations": []}
            out += [self._event("response.output_text.done", **self._at(), content_index=0, text=part["text"]),
                    self._event("response.content_part.done", **self._at(), content_index=0, part=part)]
            item["content"] = [part]
        else:
            out.append(self._event("response.function_call_arguments.done", **self._at(),
                                   arguments=item["arguments"]))
        item["status"] = "completed"
        out.append(self._event("response.output_item.done", output_index=len(self._done), item=item))
        self._done.append(item)
        self._key = None
        return out

    def thinking_delta(self, text: str) -> list[dict]:
        out = self._into("reasoning", lambda: {"type": "reasoning", "id": new_id("rs_"), "summary": [], "_text": ""})
        self._item["_text"] += text
        return out + [self._event("response.reasoning_summary_text.delta", **self._at(), summary_index=0, delta=text)]

    def text_delta(self, text: str) -> list[dict]:
        out = self._into("message", lambda: {"type": "message", "id": new_id("msg_"), "status": "in_progress",
                                             "role": "assistant", "content": [], "_text": ""})
        self._item["_text"] += text
        return out + [self._event("response.output_text.delta", **self._at(), content_index=0, delta=text,
                                  logprobs=[])]

    def tool_delta(self, index: int, call: ToolCallBuffer, piece: str) -> list[dict]:
        call.id = call.id or new_id("call_")
        out = self._into(("tool", index), lambda: {"type": "function_call", "id": new_id("fc_"), "call_id": call.id,
                                                   "name": call.name, "arguments": "", "status": "in_progress"})
        if piece:
            self._item["arguments"] += piece
            out.append(self._event("response.function_call_arguments.delta", **self._at(), delta=piece))
        return out

    def _final(self, output: list[dict]) -> tuple[str, dict]:
        """(the final event's type, the finished response)."""
        if self.answer.finish_reason == "length":
            return "response.incomplete", self.response("incomplete", output,
                                                        incomplete_details={"reason": "max_output_tokens"})
        return "response.completed", self.response("completed", output)

    def finish(self, timing: Timing) -> list[dict]:
        out = self.started() + self._close()
        kind, response = self._final(self._done)
        return out + [self._event(kind, response=response)]

    def failed(self, exc: ProxyError) -> list[dict]:
        """`response.failed`: Codex reports it, and no `response.completed` follows."""
        failed = self.response("failed", self._done, error={"code": "server_error", "message": exc.message})
        return self.started() + [self._event("response.failed", response=failed)]

    def whole(self, timing: Timing) -> dict:
        answer, output = self.answer, []
        if answer.thinking:
            output.append({"type": "reasoning", "id": new_id("rs_"), "status": "completed",
                           "summary": [{"type": "summary_text", "text": "".join(answer.thinking)}]})
        if answer.text:
            output.append({"type": "message", "id": new_id("msg_"), "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": answer.text, "annotations": []}]})
        output += [{"type": "function_call", "id": new_id("fc_"), "call_id": call.id or new_id("call_"),
                    "name": call.name, "arguments": call.arguments_text, "status": "completed"}
                   for call in answer.ordered_calls()]
        return self._final(output)[1]
