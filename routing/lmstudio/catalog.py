"""LM Studio's model list, fetched at most once per `MODEL_LIST_TTL` seconds and shared by all requests.

Uses the REST `/api/v0/models` (type, arch, quantization, state, context length) and falls back to the
OpenAI `/v1/models` (ids only) on LM Studio versions that lack it. When LM Studio also serves the native
`/api/v1/models` (0.4.0+), each model's native description (size, parameter count, capabilities, loaded
instances) is kept under the key `native`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Mapping

from routing.core.errors import EndpointMissing, ProxyError, UpstreamError
from routing.lmstudio.client import NATIVE_MODELS, Upstream

log = logging.getLogger(__name__)


class ModelCatalog:
    def __init__(self, upstream: Upstream, ttl: float = 10.0):
        self.upstream = upstream
        self.ttl = ttl
        self._models: Mapping[str, dict] = {}
        self._fetched = float("-inf")
        self._lock = asyncio.Lock()

    async def models(self) -> Mapping[str, dict]:
        """Model id -> LM Studio's description. Raises a ProxyError if LM Studio cannot be asked and
        nothing was fetched before; otherwise a stale list beats no list."""
        if time.monotonic() - self._fetched < self.ttl:
            return self._models
        async with self._lock:
            if time.monotonic() - self._fetched < self.ttl:
                return self._models
            try:
                self._models = await self._fetch()
            except ProxyError:
                if not self._models:
                    raise
                log.warning("LM Studio's model list could not be refreshed; using the last one")
            self._fetched = time.monotonic()
            return self._models

    async def get(self, model_id: str) -> dict | None:
        """One model's description, or None when LM Studio cannot be asked or does not know it."""
        try:
            return (await self.models()).get(model_id)
        except ProxyError:
            return None

    def last(self) -> Mapping[str, dict]:
        """The last list fetched (empty if none), without asking LM Studio."""
        return self._models

    def invalidate(self):
        """Forget the cached list (after a load or unload changed it)."""
        self._fetched = float("-inf")

    async def _fetch(self) -> dict[str, dict]:
        try:
            body = await self.upstream.json("GET", "/api/v0/models")
        except UpstreamError as exc:  # an older LM Studio without the REST API
            log.info("GET /api/v0/models failed (%s); falling back to /v1/models", exc.message)
            body = await self.upstream.json("GET", "/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        models = {m["id"]: m for m in data or () if isinstance(m, dict) and isinstance(m.get("id"), str)}
        try:
            native = await self.upstream.json("GET", NATIVE_MODELS)
        except UpstreamError as exc:  # LM Studio before 0.4.0 (EndpointMissing), or a failure there:
            if not isinstance(exc, EndpointMissing):  # the /api/v0 list is enough to go on
                log.warning("GET /api/v1/models failed (%s); using /api/v0 only", exc.message)
            return models
        return merge_native(models, native)


def merge_native(models: Mapping[str, dict], native) -> dict[str, dict]:
    """The /api/v0 (or /v1) descriptions with each model's /api/v1 description under `native`."""
    merged = dict(models)
    entries = native.get("models") if isinstance(native, dict) else None
    for entry in entries or ():
        key = entry.get("key") if isinstance(entry, dict) else None
        if isinstance(key, str):
            merged[key] = {**merged.get(key, {"id": key}), "native": entry}
    return merged


# --- What a model's description says (pure) -------------------------------------------------


def native_of(lm: Mapping | None) -> Mapping:
    """LM Studio's native (/api/v1) description of a model, or an empty one."""
    native = (lm or {}).get("native")
    return native if isinstance(native, Mapping) else {}


def is_loaded(lm: Mapping | None) -> bool:
    lm = lm or {}
    return lm.get("state") == "loaded" or bool(native_of(lm).get("loaded_instances"))


def capabilities(lm: Mapping | None) -> list[str]:
    """Ollama capabilities from LM Studio's model type and capabilities (/api/v0 list, /api/v1 flags)."""
    lm, native = lm or {}, native_of(lm)
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
