"""What clients are told about models: Ollama's /api/tags and /api/show entries, OpenAI's /v1/models.

Pure functions from the route table and LM Studio's model descriptions (`/api/v0/models` objects).
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Mapping

from .routes import Alias, RouteTable

DEFAULT_CONTEXT = 32768
JIT_DEFAULT_TTL = 3600  # seconds: LM Studio's idle TTL for JIT-loaded models
_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")


def tagged(name: str) -> str:
    """The name as Ollama lists it: tagless names get `:latest`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def digest(model_id: str) -> str:
    """A stable identifier for a model id (clients key caches by digest)."""
    return hashlib.sha256(model_id.encode()).hexdigest()


def _native(lm: Mapping | None) -> Mapping:
    """LM Studio's native (/api/v1) description of a model, or an empty one."""
    native = (lm or {}).get("native")
    return native if isinstance(native, Mapping) else {}


def is_loaded(lm: Mapping | None) -> bool:
    lm = lm or {}
    return lm.get("state") == "loaded" or bool(_native(lm).get("loaded_instances"))


def size_bytes(lm: Mapping | None) -> int:
    return int(_native(lm).get("size_bytes") or 0)


def details(lm: Mapping | None) -> dict:
    lm, native = lm or {}, _native(lm)
    family = lm.get("arch") or native.get("architecture") or ""
    quantization = native.get("quantization")
    quantization = quantization.get("name") if isinstance(quantization, Mapping) else None
    return {
        "parent_model": "",
        "format": lm.get("compatibility_type") or native.get("format") or "gguf",
        "family": family,
        "families": [family] if family else None,
        "parameter_size": native.get("params_string") or lm.get("params") or "",
        "quantization_level": lm.get("quantization") or quantization or "",
    }


def capabilities(lm: Mapping | None) -> list[str]:
    """Ollama capabilities from LM Studio's model type and capabilities (/api/v0 list, /api/v1 flags)."""
    lm, native = lm or {}, _native(lm)
    native_caps = native.get("capabilities") if isinstance(native.get("capabilities"), Mapping) else {}
    if lm.get("type") == "embeddings" or native.get("type") == "embedding":
        return ["embedding"]
    caps = ["completion"]
    lm_caps = lm.get("capabilities") or ()
    if "tool_use" in lm_caps or native_caps.get("trained_for_tool_use") or not lm:
        caps.append("tools")  # an unknown model too: let the client try tools
    if lm.get("type") == "vlm" or "vision" in lm_caps or native_caps.get("vision"):
        caps.append("vision")
    if "reasoning" in lm_caps or "thinking" in lm_caps or native_caps.get("reasoning"):
        caps.append("thinking")
    return caps


def context_length(lm: Mapping | None) -> int:
    """The loaded context length when loaded, else the model's maximum."""
    lm = lm or {}
    instances = _native(lm).get("loaded_instances") or ()
    loaded = next((i.get("config", {}).get("context_length") for i in instances if isinstance(i, Mapping)),
                  None)
    return int(lm.get("loaded_context_length") or loaded or lm.get("max_context_length")
               or _native(lm).get("max_context_length") or DEFAULT_CONTEXT)


def tag_entry(name: str, model_id: str, lm: Mapping | None) -> dict:
    return {"name": tagged(name), "model": tagged(name), "modified_at": _EPOCH, "size": size_bytes(lm),
            "digest": digest(model_id), "details": details(lm)}


def tags(table: RouteTable, lm_models: Mapping[str, Mapping]) -> dict:
    """/api/tags: the listed aliases first, then LM Studio's own models when `expose: all`."""
    entries = [tag_entry(a.name, a.model, lm_models.get(a.model)) for a in table.listed_aliases()]
    if table.lists_upstream_models:
        entries += [tag_entry(mid, mid, lm) for mid, lm in lm_models.items() if mid not in table.aliases]
    return {"models": entries}


def parameters_text(alias: Alias | None, lm: Mapping | None) -> str:
    """Ollama's `parameters` text (Continue reads num_ctx and stop from it)."""
    lines = [f"num_ctx {context_length(lm)}"]
    if alias:
        if alias.temperature is not None:
            lines.append(f"temperature {alias.temperature}")
        for key, value in alias.options.items():
            values = value if isinstance(value, list) else [value]
            lines += [f'{key} "{v}"' if isinstance(v, str) else f"{key} {v}" for v in values]
    return "\n".join(lines)


def show(name: str, model_id: str, alias: Alias | None, lm: Mapping | None) -> dict:
    """/api/show for a resolved model."""
    arch = (lm or {}).get("arch") or "llama"
    basename = alias.name if alias else model_id
    return {
        "modelfile": f"# Served by LM Studio through an alias proxy\nFROM {model_id}\n"
                     + (f'SYSTEM """{alias.system}"""\n' if alias and alias.system else ""),
        "parameters": parameters_text(alias, lm),
        "template": "{{ .Prompt }}",
        "details": details(lm),
        "model_info": {
            "general.architecture": arch,
            "general.basename": basename,
            f"{arch}.context_length": context_length(lm),
        },
        "capabilities": capabilities(lm),
        "modified_at": _EPOCH,
    }


def openai_model(model_id: str) -> dict:
    """One /v1/models entry (also /v1/models/{id})."""
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "lmstudio"}


def openai_models(table: RouteTable, lm_models: Mapping[str, Mapping]) -> dict:
    """/v1/models: the listed aliases, then LM Studio's models when `expose: all`."""
    ids = [a.name for a in table.listed_aliases()]
    if table.lists_upstream_models:
        ids += [m for m in lm_models if m not in table.aliases]
    return {"object": "list", "data": [openai_model(i) for i in ids]}


def ps_entry(name: str, model_id: str, lm: Mapping | None, ttl: int | None, now: datetime) -> dict:
    """One /api/ps entry. LM Studio does not report when a model will be evicted, so `expires_at` is
    an estimate: now plus the route's TTL (LM Studio's JIT default of 60 minutes when none is set)."""
    size = size_bytes(lm)
    return {"name": tagged(name), "model": tagged(name), "size": size, "digest": digest(model_id),
            "details": details(lm), "size_vram": size, "context_length": context_length(lm),
            "expires_at": (now + timedelta(seconds=ttl or JIT_DEFAULT_TTL)).isoformat()}


def running(table: RouteTable, lm_models: Mapping[str, Mapping], now: datetime) -> dict:
    """/api/ps: the listed aliases of loaded models, then the loaded models themselves (`expose: all`)."""
    entries = [ps_entry(a.name, a.model, lm_models[a.model], a.ttl or table.defaults.ttl, now)
               for a in table.listed_aliases() if is_loaded(lm_models.get(a.model))]
    if table.lists_upstream_models:
        entries += [ps_entry(mid, mid, lm, table.defaults.ttl, now)
                    for mid, lm in lm_models.items() if is_loaded(lm)]
    return {"models": entries}
