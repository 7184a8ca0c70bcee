"""Canned LM Studio answers for unit tests that fake the upstream with respx (`upstream_mock`)."""
from __future__ import annotations

import httpx
import orjson

MODELS = {"object": "list", "data": [{"id": "qwen2.5-7b-instruct", "object": "model", "type": "llm",
                                      "state": "loaded", "max_context_length": 32768}]}


def sse(*events) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def delta_chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    """One parsed chat-completion chunk as LM Studio streams it (for translator unit tests)."""
    event = {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if delta or finish else []}
    if usage:
        event["usage"] = usage
    return event


def chat_stream(tokens=("Hello", " there")) -> httpx.Response:
    chunks = [{"id": "c1", "object": "chat.completion.chunk", "model": "m",
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": t}, "finish_reason": None}]}
              for t in tokens]
    done = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [],
             "usage": {"prompt_tokens": 3, "completion_tokens": len(tokens), "total_tokens": 3 + len(tokens)}}
    return httpx.Response(200, content=sse(*chunks, done, usage),
                          headers={"Content-Type": "text/event-stream"})


def completion_stream() -> httpx.Response:
    chunk = {"id": "x", "object": "text_completion", "model": "m",
             "choices": [{"index": 0, "text": "done", "finish_reason": "stop"}]}
    return httpx.Response(200, content=sse(chunk), headers={"Content-Type": "text/event-stream"})


def embeddings_answer() -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "model": "m",
                                     "usage": {"prompt_tokens": 1, "total_tokens": 1},
                                     "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}]})


def healthy_lmstudio(router):
    """Route the endpoints the proxy calls to well-formed answers."""
    router.post("/v1/chat/completions").mock(side_effect=lambda request: chat_stream())
    router.post("/v1/completions").mock(side_effect=lambda request: completion_stream())
    router.post("/v1/embeddings").mock(side_effect=lambda request: embeddings_answer())
    router.get("/v1/models").mock(return_value=httpx.Response(200, json=MODELS))
    router.get("/api/v0/models").mock(return_value=httpx.Response(200, json=MODELS))
    return router
