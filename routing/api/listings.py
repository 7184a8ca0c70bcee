"""What clients are told about models: Ollama's /api/tags and /api/show entries, OpenAI's /v1/models.

Pure functions from the route table and LM Studio's model descriptions (`/api/v0/models` objects).
The context length a client is told is the one it will be served with: the alias's load setting,
else the loaded instance's, else the model's maximum (`served_context`).
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Mapping

import orjson

from routing.config import load_settings
from routing.config.modelfile import alias_modelfile, alias_parameters
from routing.config.table import Defaults, RouteAlias, RouteTable
from routing.lmstudio.catalog import capabilities, is_loaded, native_of

DEFAULT_CONTEXT = 32768
JIT_DEFAULT_TTL = 3600  # seconds: LM Studio's idle TTL for JIT-loaded models
_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")


def tagged(name: str) -> str:
    """The name as Ollama lists it: tagless names get `:latest`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def digest(model_id: str) -> str:
    """A stable identifier for a model id (clients key caches by digest)."""
    return hashlib.sha256(model_id.encode()).hexdigest()


def size_bytes(lm: Mapping | None) -> int:
    return int(native_of(lm).get("size_bytes") or 0)


def details(lm: Mapping | None) -> dict:
    """Ollama's `details`; a vision model's `families` include `clip`, as Ollama's do (Enchanted shows
    its image button by that)."""
    vision = bool(lm) and "vision" in capabilities(lm)
    lm, native = lm or {}, native_of(lm)
    family = lm.get("arch") or native.get("architecture") or ""
    families = [family] * bool(family) + ["clip"] * vision
    quantization = native.get("quantization")
    quantization = quantization.get("name") if isinstance(quantization, Mapping) else None
    return {
        "parent_model": "",
        "format": lm.get("compatibility_type") or native.get("format") or "gguf",
        "family": family,
        "families": families or None,
        "parameter_size": native.get("params_string") or lm.get("params") or "",
        "quantization_level": lm.get("quantization") or quantization or "",
    }


def context_length(lm: Mapping | None) -> int:
    """The loaded context length when loaded, else the model's maximum."""
    lm = lm or {}
    instances = native_of(lm).get("loaded_instances") or ()
    loaded = next((i.get("config", {}).get("context_length") for i in instances if isinstance(i, Mapping)),
                  None)
    return int(lm.get("loaded_context_length") or loaded or lm.get("max_context_length")
               or native_of(lm).get("max_context_length") or DEFAULT_CONTEXT)


def served_context(alias: RouteAlias | None, defaults: Defaults | None, lm: Mapping | None) -> int:
    """The context a request for this alias is served with: its `context_length` (alias's, else the
    defaults'; at most the model's maximum), else the loaded instance's, else the model's maximum."""
    settings, _ = load_settings.effective(alias, defaults or Defaults())
    settings = load_settings.clamp_to_model(settings, native_of(lm) or lm)
    return settings.get("context_length") or context_length(lm)


def tag_entry(name: str, model_id: str, lm: Mapping | None) -> dict:
    return {"name": tagged(name), "model": tagged(name), "modified_at": _EPOCH, "size": size_bytes(lm),
            "digest": digest(model_id), "details": details(lm)}


def tags(table: RouteTable, lm_models: Mapping[str, Mapping]) -> dict:
    """/api/tags: the listed aliases first, then LM Studio's own models when `expose: all`."""
    entries = [tag_entry(a.name, a.model, lm_models.get(a.model)) for a in table.listed_aliases()]
    if table.lists_upstream_models:
        entries += [tag_entry(mid, mid, lm) for mid, lm in lm_models.items() if mid not in table.aliases]
    return {"models": entries}


def parameters_text(alias: RouteAlias | None, lm: Mapping | None, defaults: Defaults | None = None) -> str:
    """Ollama's `parameters` text (Continue reads num_ctx and stop from it), with what becomes of a
    client's num_ctx (`num_ctx_policy`)."""
    _, num_ctx_max = load_settings.effective(alias, defaults or Defaults())
    lines = [f"num_ctx {served_context(alias, defaults, lm)}",
             f'num_ctx_policy "{load_settings.num_ctx_policy(num_ctx_max)}"']
    if alias:  # strings quoted as Ollama's show quotes them (Go's %#v)
        lines += [f"{name} {orjson.dumps(value).decode()}" for name, value in alias_parameters(alias)
                  if name != "num_ctx"]
    return "\n".join(lines)


def show(name: str, model_id: str, alias: RouteAlias | None, lm: Mapping | None,
         defaults: Defaults | None = None) -> dict:
    """/api/show for a resolved model: with an alias, its `modelfile` (which `/api/create` reads back
    into the same alias), `system`, `messages` and `license`, each left out when empty, as Ollama does."""
    arch = (lm or {}).get("arch") or "llama"
    basename = alias.name if alias else model_id
    shown = {"system": alias.system, "license": alias.license,
             "messages": [m.to_yaml() for m in alias.messages]} if alias else {}
    return {
        "modelfile": alias_modelfile(alias, model_id, tagged(basename)),
        **{key: value for key, value in shown.items() if value},
        "parameters": parameters_text(alias, lm, defaults),
        "template": "{{ .Prompt }}",
        "details": details(lm),
        "model_info": {
            "general.architecture": arch,
            "general.basename": basename,
            f"{arch}.context_length": served_context(alias, defaults, lm),
        },
        "capabilities": capabilities(lm),
        "modified_at": _EPOCH,
    }


def openai_model(model_id: str, context: int | None = None) -> dict:
    """One /v1/models entry (also /v1/models/{id}); `context_length` as LM Studio's and OpenRouter's
    lists carry it, when known."""
    entry = {"id": model_id, "object": "model", "created": 0, "owned_by": "lmstudio"}
    return entry if context is None else {**entry, "context_length": context}


def openai_models(table: RouteTable, lm_models: Mapping[str, Mapping]) -> dict:
    """/v1/models: the listed aliases, then LM Studio's models when `expose: all`, each with the
    context it is served with."""
    data = [openai_model(a.name, served_context(a, table.defaults, lm_models.get(a.model)))
            for a in table.listed_aliases()]
    if table.lists_upstream_models:
        data += [openai_model(m, served_context(None, table.defaults, lm)) for m, lm in lm_models.items()
                 if m not in table.aliases]
    return {"object": "list", "data": data}


def ps_entry(name: str, model_id: str, lm: Mapping | None, route_ttl: int | None, now: datetime,
             context: int | None = None, expires: datetime | None = None, **extra) -> dict:
    """One /api/ps entry. LM Studio does not report when a model will be evicted, so `expires_at` is
    an estimate (now plus the route's TTL, LM Studio's JIT default of 60 minutes when none is set)
    unless the proxy keeps the TTL itself (`expires`, for an instance it loaded)."""
    size = size_bytes(lm)
    expires = expires or now + timedelta(seconds=route_ttl or JIT_DEFAULT_TTL)
    return {"name": tagged(name), "model": tagged(name), "size": size, "digest": digest(model_id),
            "details": details(lm), "size_vram": size, "context_length": context or context_length(lm),
            "expires_at": expires.isoformat(), **extra}


def _instance_facts(lm: Mapping | None, instance_id: str | None, loaded: Mapping, now: datetime) -> dict:
    """ps_entry's keywords for one instance: its id, context, and (loaded by the proxy) the alias that
    loaded it and when its TTL runs out (never: a century from now, as Ollama shows keep_alive -1)."""
    if instance_id is None:
        return {}
    facts = {"instance_id": instance_id,
             "context": load_settings.instance_context(native_of(lm), instance_id)}
    record = loaded.get(instance_id)
    if record is not None:
        facts.update(loaded_by=record.alias, ttl=record.ttl,
                     expires=record.expires_at() or now + timedelta(days=36525))
    return facts


def _alias_instance(alias: RouteAlias, lm: Mapping | None, defaults: Defaults, loaded: Mapping) -> str | None:
    """The loaded instance a request for `alias` is served by (None: none is, for its settings)."""
    native = native_of(lm)
    ids = [i["id"] for i in load_settings.instances(native)]
    ours = next((iid for iid in ids if getattr(loaded.get(iid), "alias", None) == alias.name), None)
    settings, _ = load_settings.effective(alias, defaults)
    if ours or not settings:
        return ours or (ids[0] if ids else None)
    return load_settings.choose_instance(native, load_settings.clamp_to_model(settings, native))


def running(table: RouteTable, lm_models: Mapping[str, Mapping], now: datetime,
            loaded: Mapping | None = None) -> dict:
    """/api/ps: the listed aliases whose instance is loaded, then every loaded instance (`expose:
    all`), each with its context length; `loaded` (instance id -> `routing.lmstudio.instances.LoadedInstance`)
    names the instances the proxy loaded, with the alias that loaded them and their TTL."""
    loaded = loaded or {}
    entries = []
    for alias in table.listed_aliases():
        lm = lm_models.get(alias.model)
        instance_id = _alias_instance(alias, lm, table.defaults, loaded) if is_loaded(lm) else None
        if instance_id is not None or (is_loaded(lm) and not native_of(lm)):
            entries.append(ps_entry(alias.name, alias.model, lm, alias.ttl or table.defaults.ttl, now,
                                    **_instance_facts(lm, instance_id, loaded, now)))
    if table.lists_upstream_models:
        for model_id, lm in lm_models.items():
            ids = [i["id"] for i in load_settings.instances(native_of(lm))] or ([model_id] if is_loaded(lm) else [])
            entries += [ps_entry(iid, model_id, lm, table.defaults.ttl, now,
                                 **_instance_facts(lm, iid if native_of(lm) else None, loaded, now))
                        for iid in ids]
    return {"models": entries}
