"""Applying a route to an OpenAI-shaped request body: the upstream model id and the alias's overrides.

Both dialects end here: an Ollama request is first translated to OpenAI's shape, then overridden by the
same function as a request that arrived on `/v1`. Pure functions: data in, data out.
"""
from __future__ import annotations

from typing import Any, Mapping

from routing.config.messages import with_messages
from routing.config.table import Defaults, Route, RouteAlias
from routing.core.errors import BadRequest

# Ollama option -> OpenAI/LM Studio parameter, for every option LM Studio understands.
OPTION_PARAMS = {
    "num_predict": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


# The values of LM Studio's sampling parameters that make sense (inclusive; None = unbounded). Wider
# than the usual ranges, so that only absurd values are refused; integers are needed where noted.
PARAM_BOUNDS = {
    "max_tokens": (int, -1, 2 ** 31 - 1),     # LM Studio reads -1 as "no limit"
    "temperature": (float, 0, 100),
    "top_p": (float, 0, 1),
    "min_p": (float, 0, 1),
    "top_k": (int, 0, 2 ** 31 - 1),
    "seed": (int, -(2 ** 63), 2 ** 64 - 1),
    "repeat_penalty": (float, 0, 100),
    "presence_penalty": (float, -100, 100),
    "frequency_penalty": (float, -100, 100),
}
OLLAMA_NAMES = {param: option for option, param in OPTION_PARAMS.items()}


def check_params(params: Mapping[str, Any], prefix: str = "", names: Mapping[str, str] | None = None):
    """Refuse sampling parameters of the wrong type or out of range, naming the field as the client
    sent it (`prefix` + its name, through `names` for Ollama's option names)."""
    names = names or {}
    for param, value in params.items():
        if value is None or (param not in PARAM_BOUNDS and param != "stop"):
            continue
        field = prefix + names.get(param, param)
        if param == "stop":
            if not isinstance(value, (list, str)) or not all(isinstance(s, str) for s in value):
                raise BadRequest(f"{field} must be a string or a list of strings")
            continue
        kind, low, high = PARAM_BOUNDS[param]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"{field} must be a number")
        if kind is int and not isinstance(value, int):
            raise BadRequest(f"{field} must be a whole number")
        if not low <= value <= high:
            raise BadRequest(f"{field} must be between {low} and {high}, got {value}")


def options_to_params(options: Mapping[str, Any]) -> dict:
    """OpenAI parameters for Ollama `options`; options LM Studio has no equivalent for are dropped."""
    params = {}
    for name, value in options.items():
        param = OPTION_PARAMS.get(name)
        if param is None or value is None:
            continue
        if name == "num_predict" and isinstance(value, int) and value < 0:
            continue  # -1 (infinite) and -2 (fill context) mean "no limit"
        if name == "stop" and isinstance(value, str):
            value = [value]
        params[param] = value
    return params


def apply_system(messages: list[dict], alias: RouteAlias) -> list[dict]:
    """Messages with the alias's system prompt applied according to its `system_mode`."""
    if not alias.system:
        return messages
    ours = {"role": "system", "content": alias.system}
    if alias.system_mode == "replace":
        return [ours] + [m for m in messages if m.get("role") != "system"]
    if alias.system_mode == "default" and any(m.get("role") == "system" for m in messages):
        return messages
    return [ours] + messages


def apply_route(body: dict, route: Route, defaults: Defaults, client_ttl: int | None = None,
                ttl_sent: bool = False, sampling: bool = True) -> dict:
    """`body` (OpenAI shape) aimed at `route`: model id, overrides, system prompt, the alias's
    conversation (`messages`, after the system prompt, before the client's) and TTL.

    TTL precedence: the client's own (`client_ttl`, when `ttl_sent`), else the alias's, else the
    defaults', else none (LM Studio's default). `sampling=False` (embeddings) applies only the model
    and the TTL: an alias's temperature and options mean nothing there.
    """
    out = dict(body)
    out["model"] = route.model
    alias = route.alias
    if alias is not None and sampling:
        out.update(options_to_params(alias.options))
        if alias.temperature is not None:
            out["temperature"] = alias.temperature
        if "messages" in out:
            out["messages"] = with_messages(apply_system(out["messages"], alias), alias.messages)
    ttl = client_ttl if ttl_sent else route.ttl(defaults)
    if ttl is not None:
        out["ttl"] = ttl
    elif ttl_sent:
        out.pop("ttl", None)
    return out
