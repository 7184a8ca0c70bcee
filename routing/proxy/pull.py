"""`ollama pull` through the proxy: LM Studio 0.4's download API, reported the way Ollama reports a pull.

A name that resolves to a model LM Studio already has answers `success` at once. Otherwise the proxy
asks the route's first backend to download it (`POST /api/v1/models/download`): an alias's `download:`
(routing.config.downloads), else its model id as a catalog id; any other name as a catalog id, or Ollama's
`hf.co/user/repo:QUANT` as a Hugging Face link and quantization. An alias's name is never sent.

The download is started before the answer starts, so a name LM Studio cannot download is a JSON error
with its status. Then LM Studio's job is polled every PULL_POLL_INTERVAL seconds and each answer becomes
one of Ollama's progress lines (one stable digest, so clients draw one bar); `success` comes only once
the job is completed and the model is in the backend's (refreshed) model list. A job that fails, or
makes no progress for PULL_STALL_TIMEOUT seconds, ends the stream with an `{"error"}` line. A client that
hangs up stops the polling, not the download; a pull of the same model on the same backend while its job
runs follows that job instead of starting another (`RunningJobs`).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from routing.config.downloads import HF_LINK, Download, parse_download_text
from routing.config.table import Route, RouteTable, normalize_name
from routing.core.errors import (
    BadRequest,
    EndpointMissing,
    ModelNotFound,
    NotSupported,
    ProxyError,
    UpstreamError,
    UpstreamTimeout,
)
from routing.core.exchange import Exchange
from routing.dialects.base import ndjson, require_model, strict_bool
from routing.dialects.ollama import DIALECT as OLLAMA
from routing.lmstudio.backends import BackendPool, BackendState
from routing.lmstudio.downloads import JobGone, RunningJobs
from routing.proxy.observers import Observers
from routing.proxy.pipeline import begin_exchange, parse_body, resolve_route
from routing.proxy.state import AppState, current

log = logging.getLogger(__name__)

LIST_WAIT = 10.0  # seconds a finished download may take to appear in LM Studio's model list
FINISHING = ({"status": "verifying sha256 digest"}, {"status": "writing manifest"})


class NotDownloadable(ModelNotFound):
    """A name LM Studio cannot download (404), with what to do about it."""

    def __init__(self, model: str, why: str):
        super().__init__(model)
        self.message = f"cannot pull '{model}': {why}"
        self.args = (self.message,)


# --- Names: what to download, and which model must be listed afterwards (pure) ----------------------


@dataclass(frozen=True)
class Target:
    download: Download
    expect: str | None  # the LM Studio model id listed once done (None: unknown, a Hugging Face name)
    alias: str = ""


def name_download(name: str) -> Download:
    """A model name that is no alias, as LM Studio downloads it: `hf.co/user/repo:QUANT` (or a
    huggingface.co link) is a Hugging Face repo and quantization, anything else a catalog id."""
    name = normalize_name(name)
    if "://" in name and not name.lower().startswith(HF_LINK):
        raise BadRequest(f"cannot pull '{name}': a model name is not a URL (a Hugging Face model is "
                         f"hf.co/user/repo:QUANTIZATION)")
    try:
        return parse_download_text(name)
    except ValueError as exc:
        why = str(exc)
        raise NotDownloadable(name, why.replace("expected ", "LM Studio downloads ", 1)) from None


def pull_target(requested: str, route: Route | None, passthrough: bool) -> Target:
    """What `ollama pull requested` downloads, given the name's route (None: nothing serves it).

    An alias (or pattern, or the fallback when names do not pass through) downloads its `download:`,
    else its model id as a catalog id, and expects its model id listed; a name passed through (or one
    only the fallback would serve) downloads the name itself."""
    if route is None:
        raise NotDownloadable(requested, "it is no alias and names do not pass through to LM Studio "
                                         "(defaults.passthrough is off): add an alias with a `download:`")
    alias = route.alias
    if alias is None or (route.via == "fallback" and passthrough):
        download = name_download(requested)
        return Target(download, None if download.hf else download.name)
    if alias.download is not None:
        return Target(alias.download, alias.model, alias.name)
    try:
        return Target(parse_download_text(alias.model), alias.model, alias.name)
    except ValueError:
        raise NotDownloadable(requested, f"alias '{alias.name}' has no `download:` and its model id "
                                         f"'{alias.model}' is no catalog id") from None


def digest_of(backend: str, download: Download) -> str:
    """A sha256-style digest, the same for every line of one download (Ollama's CLI draws a bar per
    digest)."""
    return "sha256:" + hashlib.sha256(f"{backend}\0{download.text}".encode()).hexdigest()


def progress_line(digest: str, job: dict) -> dict:
    """One of Ollama's progress lines for an LM Studio job status. Like Ollama's ProgressResponse,
    `completed` is left out while it is 0."""
    total = job.get("total_size_bytes") or 0
    completed = min(job.get("downloaded_bytes") or 0, total) if total else job.get("downloaded_bytes") or 0
    line = {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
    return {**line, "completed": completed} if completed else line


# --- One pull ------------------------------------------------------------------------------------


@dataclass
class Pull:
    """A pull, ready to report: the model is served already (`target` None), or a download runs."""

    requested: str
    target: Target | None = None
    backend: BackendState | None = None
    first: dict | None = None  # LM Studio's answer to the start
    jobs: RunningJobs | None = None

    async def poll(self) -> dict:
        try:
            return await self.jobs.status(self.backend, self.target.download, self.first["job_id"])
        except JobGone:
            raise UpstreamError(f"LM Studio no longer knows the download of {self.target.download.text} "
                                f"(was it restarted?): pull again") from None


async def served_on(pool: BackendPool, table: RouteTable, route: Route) -> str | None:
    """The backend of the route that has its model, or None; the last failure when none can be asked."""
    names, policy = route.backends(table.defaults)
    failure, answered = None, False
    for state in pool.matched(table.backends).candidates(names, policy):
        try:
            models = await state.catalog.models()
        except ProxyError as exc:
            failure = exc
            continue
        answered = True
        if route.model in models:
            return state.name
    if not answered and failure is not None:
        raise failure
    return None


async def prepare(app: AppState, requested: str, exchange: Exchange) -> Pull:
    """Resolve the name and start (or follow) its download: every error before the answer starts."""
    table = await app.registry.table()
    try:
        route = await resolve_route(app.pool, table, requested)
    except ModelNotFound:
        route = None
    passthrough = table.defaults.passthrough
    if route is not None:
        exchange.alias, exchange.upstream_model = route.alias.name if route.alias else "", route.model
        if not (route.via == "fallback" and passthrough):
            exchange.backend = await served_on(app.pool, table, route) or ""
            if exchange.backend:
                return Pull(requested)
    target = pull_target(requested, route, passthrough)
    return await start(app, table, route or Route(requested, requested, via="passthrough"), target, exchange)


async def start(app: AppState, table: RouteTable, route: Route, target: Target, exchange: Exchange) -> Pull:
    """Start (or follow) the download of `target` on the first backend of `route`: a name LM Studio
    cannot download is a NotDownloadable, an LM Studio without the download API a NotSupported."""
    requested = route.requested
    state = app.pool.first(table, route)
    exchange.backend, exchange.upstream_model = state.name, target.expect or target.download.text
    exchange.upstream_body = target.download.lmstudio_body()
    try:
        first = await app.downloads.start(state, target.download, requested)
    except ModelNotFound:
        raise NotDownloadable(requested, _not_in_catalog(target)) from None
    except EndpointMissing:
        raise NotSupported(f"cannot pull '{requested}': this LM Studio has no download API (/api/v1 came "
                           f"with LM Studio 0.4); download {target.download.text} in LM Studio (or "
                           f"`lms get`)") from None
    return Pull(requested, target, state, first, app.downloads)


def _not_in_catalog(target: Target) -> str:
    whose = f" (the download of alias '{target.alias}')" if target.alias else ""
    fix = "fix the alias's `download:`" if target.alias else "add an alias with a `download:`"
    return (f"LM Studio cannot find {target.download.text}{whose} in its catalog or on Hugging Face: "
            f"check the name (a catalog id such as google/gemma-3-1b, or hf.co/user/repo:QUANTIZATION), "
            f"or {fix}")


async def progress(pull: Pull) -> AsyncIterator[dict]:
    """Ollama's progress lines for a running pull, ending in `success`; raises a ProxyError when it
    fails. Stopping to iterate stops the polling (LM Studio keeps downloading)."""
    yield {"status": "pulling manifest"}
    target, job = pull.target, pull.first
    digest = digest_of(pull.backend.name, target.download)
    stalled = StallWatch(settings.PULL_STALL_TIMEOUT)
    while job["status"] not in ("completed", "already_downloaded"):
        if job["status"] != "downloading" and job["status"] != "paused":
            raise UpstreamError(f"LM Studio's download of {target.download.text} {job['status']}"
                                + (f": {job['error']}" if job.get("error") else ""))
        yield progress_line(digest, job)
        stalled.check(job, target.download)
        await asyncio.sleep(settings.PULL_POLL_INTERVAL)
        job = await pull.poll()
    if job["status"] == "completed":
        yield progress_line(digest, {**job, "downloaded_bytes": job.get("total_size_bytes")})
    await until_listed(pull, patience=LIST_WAIT if job["status"] == "completed" else 0)
    for line in FINISHING:
        yield line
    yield {"status": "success", "backend": pull.backend.name}


class StallWatch:
    """Raises when a download has not grown for `timeout` seconds (paused, or stuck)."""

    def __init__(self, timeout: float):
        self.timeout, self.bytes, self.since = timeout, -1, time.monotonic()

    def check(self, job: dict, download: Download):
        done = job.get("downloaded_bytes") or 0
        if done != self.bytes:
            self.bytes, self.since = done, time.monotonic()
        elif time.monotonic() - self.since >= self.timeout:
            raise UpstreamTimeout(f"LM Studio's download of {download.text} made no progress for "
                                  f"{self.timeout:g} s (it says '{job['status']}'); it may still finish "
                                  f"in LM Studio: pull again to follow it")


async def until_listed(pull: Pull, patience: float):
    """Refresh the backend's model list until it has the expected model (LM Studio indexes a finished
    download a moment later), so /api/tags, /api/show, /v1/models and chat see it at once."""
    catalog, expect = pull.backend.catalog, pull.target.expect
    deadline = time.monotonic() + patience
    while True:
        catalog.invalidate()
        if expect is None or expect in await catalog.models():
            return
        if time.monotonic() >= deadline:
            alias = f" (the model of alias '{pull.target.alias}')" if pull.target.alias else ""
            raise UpstreamError(f"LM Studio has {pull.target.download.text} but lists no model "
                                f"'{expect}'{alias}: set the alias's model to the id LM Studio gave it "
                                f"(see /api/tags or `lms ls`)")
        await asyncio.sleep(settings.PULL_POLL_INTERVAL)


# --- The answer ----------------------------------------------------------------------------------


CLIENT_LEFT = "client disconnected; LM Studio keeps downloading"


async def stream(lines: AsyncIterator[dict], exchange: Exchange, observers: Observers) -> AsyncIterator[bytes]:
    """The progress as NDJSON, one line per write; a failure is a last `{"error"}` line, never
    success. The exchange is recorded once, however the stream ends."""
    with observers.recording(exchange, CLIENT_LEFT):
        try:
            async for line in lines:
                note(exchange, line)
                yield ndjson(line)
        except ProxyError as exc:
            exchange.fail(exc.status, exc.message)
            yield ndjson({"error": exc.message})
        except Exception as exc:  # a bug must still end the stream with an error, never just stop
            log.exception("pull stream failed")
            exchange.fail(500, f"internal error while pulling: {type(exc).__name__}")
            yield ndjson({"error": exchange.error})
        finally:
            await lines.aclose()


def note(exchange: Exchange, line: dict):
    """What the request log shows for a pull: how far it got."""
    if "total" in line:
        exchange.timing.mark_first_token()
        exchange.response_text = f"{line.get('completed', 0)} of {line['total']} bytes"
    elif line.get("status") == "success":
        exchange.response_text = f"downloaded to backend '{line['backend']}' ({exchange.response_text})"


async def whole(lines: AsyncIterator[dict], exchange: Exchange) -> dict:
    """`stream: false`: the last line once it is over (a ProxyError when the pull fails)."""
    last = {}
    async for line in lines:
        note(exchange, line)
        last = line
    return last


def one_answer(line: dict, streamed: bool, exchange: Exchange) -> HttpResponse:
    """An answer known at once: one NDJSON line when streamed (Codex reads lines, so it ends in a
    newline), else one JSON object."""
    response = HttpResponse(ndjson(line) if streamed else orjson.dumps(line),
                            content_type=OLLAMA.content_type if streamed else "application/json")
    response["X-Request-Id"] = exchange.id
    return response


async def answer(request: HttpRequest) -> HttpResponse:
    """Serve `POST /api/pull`; every outcome is recorded once in the request history. ProxyErrors
    before the answer starts are raised for the view to answer as JSON errors."""
    app = current()
    exchange = begin_exchange(request, OLLAMA.name, "/api/pull")
    with app.observers.recording(exchange, CLIENT_LEFT) as recording:
        body = parse_body(request)
        exchange.request_body = body
        exchange.requested_model = requested = require_model(body)
        exchange.stream = streamed = strict_bool(body, "stream", True)
        pull = await prepare(app, requested, exchange)
        if pull.target is None:
            exchange.response_text = f"already served by backend '{exchange.backend}'"
            return one_answer({"status": "success"}, streamed, exchange)
        if not streamed:
            return one_answer(await whole(progress(pull), exchange), streamed, exchange)
        recording.hand_over()
    response = StreamingHttpResponse(stream(progress(pull), exchange, app.observers),
                                     content_type=OLLAMA.content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Request-Id"] = exchange.id
    return response


async def pull_in_terminal(name: str, out, bar_file):
    """`manage.py routes pull NAME`: the same pull, each status a line of `out` and the download a
    tqdm bar on `bar_file`. Raises a ProxyError when it fails."""
    from tqdm import tqdm

    app = current()
    exchange = Exchange(api="ollama", endpoint="/api/pull", requested_model=name)
    bar = None
    try:
        pull = await prepare(app, name, exchange)
        if pull.target is None:
            return out.write(f"{name} is served already (backend '{exchange.backend}'): nothing to pull")
        async for line in progress(pull):
            if "total" in line:
                bar = bar or tqdm(total=line["total"], desc=line["status"], unit="B", unit_scale=True,
                                  unit_divisor=1024, file=bar_file, dynamic_ncols=True)
                bar.update(line.get("completed", 0) - bar.n)
                continue
            if bar is not None:
                bar.close()
                bar = None
            out.write(line["status"] + (f" (backend '{line['backend']}')" if "backend" in line else ""))
    finally:
        if bar is not None:
            bar.close()
        await app.aclose()  # this event loop ends here, and its connections with it
