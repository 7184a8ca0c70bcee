"""`POST /api/create` (`ollama create`, the SDKs' `create()`): an alias made from a Modelfile or its JSON
form (`routing.config.creation`), stored where the admin's aliases live (`aliases.store_alias`), so it
is in the admin and in `routes export`, and served by every instance within about a second.

`from` is an alias (the new one starts from its settings), a model LM Studio has, or a model LM Studio
can download (a catalog id, `hf.co/user/repo:QUANT`), downloaded first with `ollama pull`'s progress
lines. Whatever can be refused is refused before the answer starts, before anything is downloaded or
stored: a 400 naming the Modelfile line or the field.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from routing.api.aliases import checked_row, required_name, store_alias
from routing.config import creation
from routing.config.downloads import downloaded_id, parse_download_text
from routing.config.table import Route, RouteAlias, RouteTable, normalize_name
from routing.core.errors import BadRequest, ModelNotFound, ProxyError, UpstreamError
from routing.core.exchange import Exchange
from routing.core.responses import json_response
from routing.dialects.base import ndjson, strict_bool
from routing.dialects.ollama import DIALECT as OLLAMA
from routing.proxy import pull
from routing.proxy.pipeline import parse_body
from routing.proxy.state import AppState, current

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """What `from` names: an alias to start from, or an LM Studio model (to download first when
    `target` is set; `listed` are the model ids LM Studio listed before)."""

    model: str
    base: RouteAlias | None = None
    target: pull.Target | None = None
    listed: frozenset = frozenset()


async def answer(request: HttpRequest) -> HttpResponse:
    """Serve `POST /api/create`: NDJSON status lines ending in `{"status": "success"}` (the default),
    or that one object with `stream: false`."""
    body = parse_body(request)
    name = required_name(body, "model", "name")
    wanted = creation.create_request(body, name)
    creation.check_requires(wanted, settings.OLLAMA_VERSION)
    streamed = strict_bool(body, "stream", True)
    state = current()
    table = await state.registry.table()
    source = await _source(state, table, wanted)
    alias = creation.alias_of(wanted, source.base, source.model)
    description = f"made by ollama create from {wanted.source}"
    await sync_to_async(checked_row)(alias, name, description)
    if source.target is None:
        stored = await sync_to_async(store_alias)(alias, name, description)
        lines = [{"status": "gathering model components"}, *_finishing(stored)]
        if not streamed:
            return json_response(lines[-1])
        return HttpResponse(b"".join(map(ndjson, lines)), content_type=OLLAMA.content_type)
    try:
        started = await pull.start(state, table, Route(wanted.source, source.model, via="passthrough"),
                                   source.target, Exchange(api=OLLAMA.name, endpoint="/api/create"))
    except ModelNotFound as exc:  # LM Studio cannot download it: the FROM is wrong
        raise BadRequest(wanted.where("from") + exc.message) from None
    lines = _downloaded(started, source, alias, name, description)
    if not streamed:
        last = {}
        async for last in lines:
            pass
        return json_response(last)
    response = StreamingHttpResponse(_stream(lines), content_type=OLLAMA.content_type)
    response["Cache-Control"] = "no-cache"
    return response


async def _source(state: AppState, table: RouteTable, wanted: creation.CreateRequest) -> Source:
    """What `from` names (the route table first, then LM Studio's models, then its downloads)."""
    route = table.resolve(wanted.source)
    if route is not None and route.alias is not None and route.via != "fallback":
        return Source(route.alias.model, route.alias)
    models = await state.pool.models_everywhere(table)
    model_id = normalize_name(wanted.source)
    if model_id in models:
        return Source(model_id)
    try:
        download = parse_download_text(model_id)
    except ValueError:
        raise BadRequest(wanted.where("from") + f"'{wanted.source}' is no alias, no model LM Studio has, and "
                         f"nothing it can download (a catalog id such as google/gemma-3-1b, or "
                         f"hf.co/user/repo:QUANTIZATION)") from None
    target = pull.Target(download, None if download.hf else download.name)
    return Source(download.text, target=target, listed=frozenset(models))


def _finishing(alias: RouteAlias) -> list[dict]:
    return [{"status": f"using LM Studio model {alias.model}"}, {"status": f"writing alias {alias.name}"},
            {"status": "success"}]


async def _downloaded(started: pull.Pull, source: Source, alias: RouteAlias, name: str,
                      description: str) -> AsyncIterator[dict]:
    """The download's progress lines, then the alias stored with the model id the download became."""
    yield {"status": "gathering model components"}
    async for line in pull.progress(started):
        if line.get("status") != "success":
            yield line
    download = source.target.download
    model = downloaded_id(download, source.listed, await started.backend.catalog.models())
    if model is None:
        raise UpstreamError(f"LM Studio downloaded {download.text}, but which model id it became is not "
                            f"clear: create the alias FROM the id LM Studio lists (`lms ls`)")
    alias = replace(alias, model=model, download=download if download.hf else alias.download)
    for line in _finishing(await sync_to_async(store_alias)(alias, name, description)):
        yield line


async def _stream(lines: AsyncIterator[dict]) -> AsyncIterator[bytes]:
    """The lines as NDJSON; a failure is a last `{"error"}` line, never success."""
    try:
        async for line in lines:
            yield ndjson(line)
    except ProxyError as exc:
        yield ndjson({"error": exc.message})
    except Exception as exc:  # a bug must still end the stream with an error, never just stop
        log.exception("create stream failed")
        yield ndjson({"error": f"internal error while creating: {type(exc).__name__}"})
    finally:
        await lines.aclose()
