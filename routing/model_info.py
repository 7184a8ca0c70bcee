"""What clients are told about models: Ollama's /api/tags and /api/show entries, OpenAI's /v1/models.

Pure functions from the route table and LM Studio's model descriptions (`/api/v0/models` objects).
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Mapping

from .routes import Alias, RouteTable

DEFAULT_CONTEXT = 32768
_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")


def tagged(name: str) -> str:
    """The name as Ollama lists it: tagless names get `:latest`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def digest(model_id: str) -> str:
    """A stable identifier for a model id (clients key caches by digest)."""
    return hashlib.sha256(model_id.encode()).hexdigest()


def details(lm: Mapping | None) -> dict:
    lm = lm or {}
    family = lm.get("arch") or ""
    return {
        "parent_model": "",
        "format": lm.get("compatibility_type") or "gguf",
        "family": family,
        "families": [family] if family else None,
        "parameter_size": lm.get("params") or lm.get("parameter_size") or "",
        "quantization_level": lm.get("quantization") or "",
    }


def capabilities(lm: Mapping | None) -> list[str]:
    """Ollama capabilities from LM Studio's model type and capabilities."""
    lm = lm or {}
    if lm.get("type") == "embeddings":
        return ["embedding"]
    caps = ["completion"]
    lm_caps = lm.get("capabilities") or ()
    if "tool_use" in lm_caps or not lm:  # unknown model: let the client try tools
        caps.append("tools")
    if lm.get("type") == "vlm" or "vision" in lm_caps:
        caps.append("vision")
    if "reasoning" in lm_caps or "thinking" in lm_caps:
        caps.append("thinking")
    return caps


def context_length(lm: Mapping | None) -> int:
    lm = lm or {}
    return int(lm.get("loaded_context_length") or lm.get("max_context_length") or DEFAULT_CONTEXT)


def tag_entry(name: str, model_id: str, lm: Mapping | None) -> dict:
    return {"name": tagged(name), "model": tagged(name), "modified_at": _EPOCH, "size": 0,
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


def openai_models(table: RouteTable, lm_models: Mapping[str, Mapping]) -> dict:
    """/v1/models: the listed aliases, then LM Studio's models when `expose: all`."""
    ids = [a.name for a in table.listed_aliases()]
    if table.lists_upstream_models:
        ids += [m for m in lm_models if m not in table.aliases]
    return {"object": "list",
            "data": [{"id": i, "object": "model", "created": 0, "owned_by": "lmstudio"} for i in ids]}
