"""Serving a route from an LM Studio instance loaded with its load settings (LM Studio 0.4+).

An alias (or `defaults`) with load settings (`routing.config.load_settings`) is served by an instance loaded
exactly so: the proxy picks one from LM Studio's `/api/v1/models` (its model list, cached for
MODEL_LIST_TTL) or loads one with `POST /api/v1/models/load`, and sends the request to that instance's
id. Routes without load settings are left alone (LM Studio's Just-In-Time loading, as before).

- **One load per settings.** Concurrent first requests for the same backend, model and settings wait
  for one load (single flight); before loading, LM Studio's list is read afresh, so a list cached
  from before another load never causes a second one. (Per process: several proxy processes may
  each load once.)
- **Where.** On the backend the request tries first (`BackendPool.first`); if the request then falls back
  to another backend, that one gets the plain model id and loads it its own (JIT) way
  (`Exchange.body_for`).
- **TTL.** LM Studio's load API takes no TTL, so the proxy keeps it: an instance it loaded is unloaded
  after the request's TTL (keep_alive, else the alias's, else defaults.ttl) of idleness; with no TTL
  it stays loaded, as after `lms load`.
- **Older LM Studio** (no `/api/v1`): the request goes as before (JIT) and a warning is logged once
  per backend.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from routing.config import load_settings
from routing.core.errors import EndpointMissing, ModelNotFound, ModelNotLoaded, UpstreamError, UpstreamTimeout
from routing.lmstudio.backends import BackendPool, BackendState

log = logging.getLogger(__name__)


@dataclass
class LoadedInstance:
    """An instance this process loaded: for /api/ps (who loaded it, with what) and its idle TTL."""

    backend: str
    instance_id: str
    model: str
    alias: str
    settings: Mapping[str, Any]
    ttl: int | None
    state: BackendState = field(repr=False, compare=False, default=None)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0
    timer: Any = None

    def expires_at(self) -> datetime | None:
        if self.ttl is None:
            return None
        idle = 0.0 if self.busy else time.monotonic() - self.last_used
        return datetime.fromtimestamp(time.time() - idle + self.ttl, timezone.utc)


class InstanceLoader:
    """The process's loads: in flight (single flight per key), and the instances it loaded."""

    def __init__(self, pool: BackendPool, load_timeout: float = 900.0):
        self.pool, self.load_timeout = pool, load_timeout
        self.inflight: dict[tuple, asyncio.Task] = {}
        self.by_key: dict[tuple, str] = {}                       # key -> instance id loaded for it
        self.loaded: dict[tuple[str, str], LoadedInstance] = {}  # (backend, instance id) -> record
        self.warned: set[str] = set()

    async def ensure(self, state: BackendState, model: str, settings: Mapping, who: str,
                     ttl: int | None) -> tuple[str | None, dict | None]:
        """(the instance id serving `settings`, or None for "send as before"; the load waited for, if
        any: {"settings", "instance_id", "seconds", "joined"})."""
        entry = await state.catalog.get(model)
        if entry is None:  # a model LM Studio does not list: its answer (404) says so
            return None, None
        native = entry.get("native")
        if native is None:
            self.warn_once(state, model)
            return None, None
        settings = load_settings.clamp_to_model(settings, native)
        key = (state.name, model, tuple(sorted(settings.items())))
        chosen = load_settings.choose_instance(native, settings, self.by_key.get(key))
        if chosen is not None:
            return chosen, None
        task = self.inflight.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.ensure_future(self._load(state, model, settings, key, who, ttl))
            self.inflight[key] = task
            task.add_done_callback(lambda done, key=key: self._finished(key, done))
        instance_id, loaded = await asyncio.shield(task)  # a client that leaves does not stop the load
        return instance_id, loaded and {**loaded, "joined": joined}

    def _finished(self, key: tuple, task: asyncio.Task):
        self.inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: a failed load whose requests all left is not "unhandled"

    async def _load(self, state: BackendState, model: str, settings: Mapping, key: tuple, who: str,
                    ttl: int | None) -> tuple[str | None, dict | None]:
        """Read LM Studio's list afresh and load an instance unless one now serves `settings`."""
        try:
            native = await self.native_entry(state, model)
        except EndpointMissing:
            self.warn_once(state, model)
            return None, None
        chosen = load_settings.choose_instance(native, settings, self.by_key.get(key))
        if chosen is not None:
            return chosen, None
        try:
            answer = await self._post_load(state, model, settings, who)
        except EndpointMissing:  # /api/v1 without its load: as an older LM Studio
            self.warn_once(state, model)
            return None, None
        finally:
            state.catalog.invalidate()
        instance_id = answer.get("instance_id") or answer.get("model_instance_id")
        if not isinstance(instance_id, str) or not instance_id:
            raise UpstreamError(f"LM Studio loaded '{model}' but named no instance: {answer!r:.200}")
        self.by_key[key] = instance_id
        record = LoadedInstance(state.name, instance_id, model, who, dict(settings), ttl, state)
        self.loaded[(state.name, instance_id)] = record
        self.schedule(record)
        log.info("loaded %s as instance %s on backend %s with %s for %s", model, instance_id, state.name,
                 describe(settings), who)
        return instance_id, {"settings": dict(settings), "instance_id": instance_id,
                             "seconds": answer.get("load_time_seconds")}

    async def _post_load(self, state: BackendState, model: str, settings: Mapping, who: str) -> dict:
        """LM Studio's answer to loading `model` with `settings`; its failures said in those terms."""
        timeout = self.load_timeout
        try:
            return await state.upstream.json("POST", "/api/v1/models/load",
                                             load_settings.load_request(model, settings), model=model,
                                             read_timeout=timeout)
        except UpstreamTimeout:
            raise UpstreamTimeout(f"LM Studio did not finish loading '{model}' with {describe(settings)} "
                                  f"within MODEL_LOAD_TIMEOUT ({timeout:g} s)") from None
        except (ModelNotFound, EndpointMissing):
            raise
        except (UpstreamError, ModelNotLoaded) as exc:
            raise UpstreamError(f"LM Studio could not load '{model}' with {describe(settings)} for "
                                f"'{who}': {exc.message.removeprefix('LM Studio: ')}") from None

    @staticmethod
    async def native_entry(state: BackendState, model: str) -> dict | None:
        return next((m for m in await state.upstream.native_models() if m.get("key") == model), None)

    def warn_once(self, state: BackendState, model: str):
        if state.name not in self.warned:
            self.warned.add(state.name)
            log.warning("LM Studio backend '%s' has no /api/v1 (LM Studio 0.4+): load settings do not "
                        "apply there; '%s' and others are loaded by LM Studio's JIT default", state.name,
                        model)

    # --- the idle TTL of instances this process loaded -------------------------------------------

    def use(self, backend: str, instance_id: str, ttl: int | None, exchange):
        """A request is sent to an instance: it is busy until the exchange ends, then idle again."""
        record = self.loaded.get((backend, instance_id))
        if record is None:
            return
        record.busy += 1
        record.ttl = ttl
        exchange.on_release(lambda: self.release(record))

    def release(self, record: LoadedInstance):
        record.busy = max(0, record.busy - 1)
        record.last_used = time.monotonic()
        self.schedule(record)

    def schedule(self, record: LoadedInstance):
        if record.timer is not None:
            record.timer.cancel()
        record.timer = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # released outside the server's loop (a test's teardown): nothing to time
            return
        if record.ttl is None or record.ttl <= 0:
            return
        record.timer = loop.call_later(record.ttl, lambda: loop.create_task(self.expire(record)))

    async def expire(self, record: LoadedInstance):
        """Unload an instance idle for its TTL (not while a request uses it)."""
        if record.busy or self.loaded.get((record.backend, record.instance_id)) is not record:
            return
        self.forget(record.backend, record.instance_id)
        try:
            await record.state.upstream.unload(record.instance_id)
            log.info("unloaded instance %s on backend %s after %s s idle", record.instance_id, record.backend,
                     record.ttl)
        except UpstreamError as exc:  # unloaded in LM Studio already, or LM Studio away: nothing to keep
            log.info("instance %s on backend %s was not unloaded: %s", record.instance_id, record.backend,
                     exc.message)
        record.state.catalog.invalidate()

    def forget(self, backend: str, instance_id: str):
        record = self.loaded.pop((backend, instance_id), None)
        if record is not None and record.timer is not None:
            record.timer.cancel()
        for key in [k for k, v in self.by_key.items() if k[0] == backend and v == instance_id]:
            del self.by_key[key]

    def records(self, backend: str) -> dict[str, LoadedInstance]:
        """The instances this process loaded on `backend`, by instance id."""
        return {iid: r for (name, iid), r in self.loaded.items() if name == backend}

    # --- what a request asks for ------------------------------------------------------------------

    async def serve_from(self, table, route, exchange, ttl: int | None) -> tuple[BackendState | None, str | None]:
        """Ensure the instance a request's load settings ask for on its first backend and record on
        the exchange the load it waited for; (backend, instance id), or (None, None) to send as before."""
        settings = wanted(table, route, exchange)
        if not settings:
            return None, None
        state = self.pool.first(table, route)
        started = time.perf_counter()
        exchange.load = {"settings": dict(settings), "backend": state.name}
        try:
            instance_id, loaded = await self.ensure(state, route.model, settings, exchange.alias or route.model,
                                                    ttl)
        except BaseException:
            exchange.load["ms"] = (time.perf_counter() - started) * 1000
            raise
        if loaded is None:
            exchange.load = None  # nothing was loaded for it: not worth a line in the history
        else:
            exchange.load.update(loaded, ms=(time.perf_counter() - started) * 1000)
        return state, instance_id

    async def _claim(self, table, route, exchange, ttl) -> str | None:
        """The instance id the route's load settings ask for (loaded first when none is), recorded on
        the exchange and kept alive for `ttl`; None when there is nothing to honour (no load settings,
        or no /api/v1)."""
        state, instance_id = await self.serve_from(table, route, exchange, ttl)
        if instance_id is not None:
            self.use(state.name, instance_id, ttl, exchange)
            exchange.instance = (state.name, instance_id, route.model)
        return instance_id

    async def apply(self, table, route, upstream_body: dict, exchange) -> dict:
        """The upstream body aimed at the instance the route's load settings ask for (loaded first when
        none is): the pipeline's one hook before a request goes to LM Studio, for every dialect (it
        reads only the OpenAI-shaped body's `model` and `ttl`)."""
        instance_id = await self._claim(table, route, exchange, upstream_body.get("ttl"))
        if instance_id is None or instance_id == upstream_body.get("model"):
            return upstream_body
        exchange.upstream_body = {**upstream_body, "model": instance_id}
        return exchange.upstream_body

    async def warm_up(self, table, route, exchange) -> bool:
        """Ollama's empty chat/generate (a load): load the instance the route's settings ask for. True
        when one was loaded; False when there was nothing to do here (already loaded, or no load
        settings: then the JIT warm-up of `routing.lmstudio.loading` applies)."""
        if await self._claim(table, route, exchange, exchange.ttl) is None:  # keep_alive sets its TTL
            return False
        return exchange.load is not None


def describe(settings: Mapping) -> str:
    return ", ".join(f"{k} {v}" for k, v in settings.items()) or "LM Studio's default settings"


def wanted(table, route, exchange) -> Mapping[str, Any]:
    """The load settings a request asks for: the route's, with an Ollama client's `options.num_ctx`
    when the route's policy honours it."""
    settings, num_ctx_max = load_settings.effective(route.alias, table.defaults)
    body = exchange.request_body if exchange.api == "ollama" else None
    options = body.get("options") if isinstance(body, dict) else None
    num_ctx = options.get("num_ctx") if isinstance(options, dict) else None
    return load_settings.with_num_ctx(settings, num_ctx_max, num_ctx)
