"""Embeddings in both dialects: Ollama's /api/embed (batch) and /api/embeddings (legacy), and OpenAI's
/v1/embeddings, all sent to LM Studio's /v1/embeddings. Pure functions, no I/O.

`*_request` functions check a client body and build the OpenAI-shaped upstream body (the route is
applied afterwards, as for chat); `*_answer` functions turn LM Studio's answer into the client's shape.
"""
from __future__ import annotations

import math
from typing import Any

from routing.core.errors import BadRequest, UpstreamError
from routing.core.exchange import Timing


def _inputs(value: Any, name: str) -> list[str]:
    if value is None:
        raise BadRequest(f"{name} is required")
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name} must be a string or a list of strings")
    return value


def _dimensions(body: dict) -> int | None:
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0):
        raise BadRequest("dimensions must be a positive integer")
    return dims


def embed_request(body: dict) -> dict:
    """An Ollama /api/embed body (`input`: a string or a list) as an OpenAI embeddings request."""
    out: dict = {"input": _inputs(body.get("input"), "input")}
    if body.get("truncate") is not None and not isinstance(body["truncate"], bool):
        raise BadRequest("truncate must be true or false")
    if (dims := _dimensions(body)) is not None:
        out["dimensions"] = dims
    return out


def legacy_embeddings_request(body: dict) -> dict:
    """An Ollama /api/embeddings body (`prompt`: one string) as an OpenAI embeddings request."""
    prompt = body.get("prompt")
    if prompt is None:
        raise BadRequest("prompt is required")
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be a string")
    return {"input": prompt}


def openai_embeddings_request(body: dict) -> dict:
    """A /v1/embeddings body, checked for what the proxy relies on."""
    _inputs(body.get("input"), "input")
    _dimensions(body)
    return dict(body)


def vectors(answer: dict) -> list[list[float]]:
    """The embedding vectors of an OpenAI embeddings answer, in input order."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise UpstreamError("LM Studio sent an embeddings answer without data")
    ordered = sorted((d for d in data if isinstance(d, dict)), key=lambda d: d.get("index", 0))
    return [d.get("embedding") or [] for d in ordered]


def shortened(vector: list[float], dims: int | None) -> list[float]:
    """Ollama's `dimensions`: the first `dims` values, normalised again to unit length."""
    if dims is None or len(vector) <= dims:
        return vector
    head = vector[:dims]
    norm = math.sqrt(sum(v * v for v in head)) or 1.0
    return [v / norm for v in head]


def embed_answer(answer: dict, body: dict, model: str, timing: Timing) -> dict:
    """LM Studio's answer as Ollama's /api/embed response."""
    dims = body.get("dimensions")
    usage = answer.get("usage") or {}
    return {"model": model, "embeddings": [shortened(v, dims) for v in vectors(answer)],
            "total_duration": timing.total_ns(), "load_duration": 0,
            "prompt_eval_count": usage.get("prompt_tokens") or 0}


def legacy_embeddings_answer(answer: dict, body: dict, model: str, timing: Timing) -> dict:
    """LM Studio's answer as Ollama's legacy /api/embeddings response."""
    found = vectors(answer)
    return {"embedding": found[0] if found else []}


def openai_embeddings_answer(answer: dict, body: dict, model: str, timing: Timing) -> dict:
    """LM Studio's answer with the client's model name."""
    return {**answer, "model": model}
