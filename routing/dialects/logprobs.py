"""Log probabilities on Ollama's side (`logprobs: true`, `top_logprobs: N` on `/api/chat` and
`/api/generate`): asked of LM Studio with OpenAI's fields, and LM Studio's answer turned into Ollama's
list of `{token, logprob, bytes?, top_logprobs?}`. The OpenAI dialect passes them through as they are.

When LM Studio sends none, there is no field: never an error. Pure, no I/O.
"""
from __future__ import annotations

from typing import Any, Mapping

from routing.core.errors import BadRequest
from routing.dialects.base import strict_bool

MAX_TOP_LOGPROBS = 20


def logprob_params(body: dict, completion: bool = False) -> dict:
    """LM Studio's parameters for Ollama's `logprobs` and `top_logprobs` (0 to 20; without
    `logprobs: true` it is ignored, as in Ollama). A text completion (`completion`, raw generate) takes
    OpenAI's legacy form: `logprobs` is the number of alternatives."""
    wanted = strict_bool(body, "logprobs", False)
    top = body.get("top_logprobs")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS):
        raise BadRequest(f"top_logprobs must be a whole number between 0 and {MAX_TOP_LOGPROBS}")
    if not wanted:
        return {}
    if completion:
        return {"logprobs": top or 0}
    return {"logprobs": True, **({"top_logprobs": top} if top else {})}


def _token(entry: Mapping) -> dict | None:
    token, logprob = entry.get("token"), entry.get("logprob")
    if not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, (int, float)):
        return None
    out = {"token": token, "logprob": logprob}
    if isinstance(entry.get("bytes"), list):
        out["bytes"] = entry["bytes"]
    return out


def _entry(entry: Any) -> dict | None:
    """One of Ollama's entries for one of OpenAI's `logprobs.content` entries."""
    out = _token(entry) if isinstance(entry, Mapping) else None
    if out is None:
        return None
    top = [t for t in map(_token, [e for e in entry.get("top_logprobs") or () if isinstance(e, Mapping)]) if t]
    return {**out, "top_logprobs": top} if top else out


def _legacy(logprobs: Mapping) -> list[dict]:
    """A text completion's logprobs (`tokens`, `token_logprobs`, `top_logprobs` as {token: logprob})."""
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        return []
    tops = logprobs.get("top_logprobs") if isinstance(logprobs.get("top_logprobs"), list) else []
    out = []
    for i, (token, value) in enumerate(zip(tokens, values)):
        top = tops[i] if i < len(tops) and isinstance(tops[i], Mapping) else {}
        entry = _entry({"token": token, "logprob": value,
                        "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()]})
        if entry:
            out.append(entry)
    return out


def ollama_logprobs(choice: Mapping) -> list[dict]:
    """Ollama's logprobs entries for one of LM Studio's choices (a chat chunk or answer, or a text
    completion's); empty when it has none."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, Mapping):
        return []
    content = logprobs.get("content")
    if isinstance(content, list):
        return [entry for entry in map(_entry, content) if entry]
    return _legacy(logprobs)
