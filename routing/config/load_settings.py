"""How an alias's model is loaded: LM Studio's load settings, the `num_ctx` policy, and which loaded
instance satisfies them. Pure functions: data in, data out (the loading itself is `routing.lmstudio.instances`).

LM Studio 0.4's `POST /api/v1/models/load` takes `context_length`, `eval_batch_size`, `flash_attention`,
`num_experts` and `offload_kv_cache_to_gpu`; `GET /api/v1/models` reports each loaded instance with the
same names under `config`. An alias (or `defaults`) that sets any of them is served by an instance
loaded with exactly those settings, which the proxy loads when none is.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping

# setting -> its type in routes.yaml and in LM Studio's load request ("count": a positive integer)
LOAD_SETTINGS = {"context_length": "count", "eval_batch_size": "count", "num_experts": "count",
                 "flash_attention": "flag", "offload_kv_cache_to_gpu": "flag"}
# The client's `options.num_ctx` is honoured up to this many tokens; absent (or 0): ignored.
NUM_CTX_KEY = "num_ctx_max"
FIELDS = (*LOAD_SETTINGS, NUM_CTX_KEY)
MAX_COUNT = 2 ** 31 - 1


def load_fields(data: Mapping, fail: Callable[[str, str], None]) -> dict:
    """Validate the load settings and `num_ctx_max` of an alias or of `defaults` (absent: None).

    `fail(message, key)` raises the caller's error (routes.yaml: with the file and line)."""
    out: dict[str, Any] = {}
    for key in FIELDS:
        value = data.get(key)
        if value is not None and LOAD_SETTINGS.get(key) == "flag":
            if not isinstance(value, bool):
                fail(f"'{key}' must be true or false, got {value!r}", key)
        elif value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_COUNT:
                fail(f"'{key}' must be a positive whole number, got {value!r}", key)
        out[key] = value
    return out


def effective(alias, defaults) -> tuple[Mapping[str, Any], int | None]:
    """(the load settings a route is served with, its num_ctx maximum): each of the alias's own,
    else the defaults' (`alias` may be None: a pass-through name gets the defaults')."""
    def pick(key):
        own = getattr(alias, key, None) if alias is not None else None
        return own if own is not None else getattr(defaults, key, None)

    settings = {key: value for key in LOAD_SETTINGS if (value := pick(key)) is not None}
    return MappingProxyType(settings), pick(NUM_CTX_KEY)


def with_num_ctx(settings: Mapping[str, Any], num_ctx_max: int | None, num_ctx) -> Mapping[str, Any]:
    """The settings with a client's `options.num_ctx` honoured: when the policy allows it
    (`num_ctx_max` set), the context length becomes num_ctx, at most num_ctx_max. A num_ctx that is
    not a positive whole number is ignored like an unset one."""
    if not num_ctx_max or isinstance(num_ctx, bool) or not isinstance(num_ctx, int) or num_ctx <= 0:
        return settings
    return MappingProxyType({**settings, "context_length": min(num_ctx, num_ctx_max)})


def clamp_to_model(settings: Mapping[str, Any], native: Mapping | None) -> Mapping[str, Any]:
    """A context length above the model's maximum is asked for as the maximum (LM Studio could not
    load more, and an instance could then never match)."""
    top = (native or {}).get("max_context_length")
    wanted = settings.get("context_length")
    if isinstance(top, int) and top > 0 and isinstance(wanted, int) and wanted > top:
        return MappingProxyType({**settings, "context_length": top})
    return settings


def num_ctx_policy(num_ctx_max: int | None) -> str:
    """How /api/show says what happens to a client's num_ctx."""
    return f"honoured up to {num_ctx_max}" if num_ctx_max else "ignored"


def instances(native: Mapping | None) -> list[dict]:
    """The loaded instances of a model's /api/v1 description, each `{"id", "config"}`."""
    found = (native or {}).get("loaded_instances") or ()
    return [i for i in found if isinstance(i, Mapping) and isinstance(i.get("id"), str)]


def satisfies(config: Mapping | None, settings: Mapping[str, Any]) -> bool:
    """Whether an instance loaded with `config` is loaded exactly as `settings` ask. Exactly: an
    alias asking for 8192 tokens is not served by another alias's 65536-token instance, so each keeps
    the context it is described with; a setting the instance does not report does not match."""
    config = config or {}
    return all(key in config and config[key] == value for key, value in settings.items())


def choose_instance(native: Mapping | None, settings: Mapping[str, Any],
                    remembered: str | None = None) -> str | None:
    """The id of the loaded instance that serves `settings`, or None when one must be loaded.

    `remembered` is the instance this process loaded for these settings: it serves them while it is
    loaded, whatever LM Studio reports of its config. Otherwise the first instance whose config
    satisfies them."""
    loaded = instances(native)
    if remembered and any(i["id"] == remembered for i in loaded):
        return remembered
    return next((i["id"] for i in loaded if satisfies(i.get("config"), settings)), None)


def load_request(model: str, settings: Mapping[str, Any]) -> dict:
    """The body of LM Studio's `POST /api/v1/models/load` for `model` with `settings`."""
    return {"model": model, **settings, "echo_load_config": True}


def instance_context(native: Mapping | None, instance_id: str | None) -> int | None:
    """The context length an instance was loaded with, if LM Studio reports it."""
    for instance in instances(native):
        if instance["id"] == instance_id:
            value = (instance.get("config") or {}).get("context_length")
            return value if isinstance(value, int) else None
    return None
