"""The OpenAI chat dialect on `/v1/chat/completions` and `/v1/completions`: requests checked and aimed
at a route, chunks passed through.

LM Studio already speaks it, so translation is small: the model id in and out, usage requested for the
request log (and hidden again if the client did not ask for it).
"""
from __future__ import annotations

from routing.config.overrides import check_params
from routing.core.errors import BadRequest, ProxyError, UpstreamError, error_body
from routing.core.exchange import Timing
from routing.dialects.base import Answer, Dialect, sse_data

DIALECT = Dialect("openai", "text/event-stream", sse_data, b"data: [DONE]\n\n")
ROLES = ("system", "user", "assistant", "tool", "developer")


def check_chat(body: dict) -> dict:
    """A /v1/chat/completions body, checked for what the proxy itself relies on."""
    check_params(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            role = msg.get("role") if isinstance(msg, dict) else None
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise BadRequest("tools must be a list")
    out = _with_usage(body)
    if out.get("max_completion_tokens") is not None and out.get("max_tokens") is None:
        # OpenAI's newer name; LM Studio documents only max_tokens
        out["max_tokens"] = out["max_completion_tokens"]
    return out


def check_completion(body: dict) -> dict:
    """A /v1/completions body."""
    check_params(body)
    if not isinstance(body.get("prompt"), (str, list)):
        raise BadRequest("prompt must be a string or a list of strings")
    return _with_usage(body)


def _with_usage(body: dict) -> dict:
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise BadRequest("stream_options must be an object")
    if body.get("stream"):
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        return {**body, "stream_options": options}
    return dict(body)


def client_ttl(body: dict) -> tuple[bool, int | None]:
    """LM Studio's own `ttl` extension, when an OpenAI client sends it."""
    ttl = body.get("ttl")
    if ttl is None:
        return False, None
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise BadRequest("ttl must be a positive number of seconds")
    return True, ttl


def translator(model: str, body: dict) -> "Translator":
    return Translator(model, bool((body.get("stream_options") or {}).get("include_usage")))


class Translator:
    """Passes OpenAI chunks through with the client's model name, remembering the answer for the log."""

    def __init__(self, model: str, client_wants_usage: bool):
        self.model = model
        self.client_wants_usage = client_wants_usage
        self.answer = Answer()
        self._last: dict | None = None

    def feed(self, event: dict) -> list[dict]:
        self.answer.add_usage(event.get("usage"))
        choices = event.get("choices") or ()
        for choice in choices:
            delta = choice.get("delta") or choice.get("message")
            self.answer.add_delta(delta if delta is not None else {"content": choice.get("text")})
            if choice.get("finish_reason"):
                self.answer.finish_reason = choice["finish_reason"]
        if not choices and event.get("usage") and not self.client_wants_usage:
            return []
        if "model" in event:
            event["model"] = self.model
        self._last = event
        return [event]

    def finish(self, timing: Timing) -> list[dict]:
        return []

    def failed(self, exc: ProxyError) -> list[dict]:
        return [error_body(exc, DIALECT.name)]

    def whole(self, timing: Timing) -> dict:
        """A non-streamed request is sent to LM Studio non-streamed: its one answer, passed on."""
        if self._last is None:
            raise UpstreamError("LM Studio sent an empty answer")
        return self._last
