"""Run a logged request again from the history pages and compare the runs side by side, live.

`POST /history/<id>/replay/` (the permission "run logged requests again", CSRF-protected) starts one
replay per chosen alias on the server's event loop (`adminui.replay`: the proxy's own pipeline, a logged
request each) and redirects to the comparison page, which polls `/history/compare/<cid>.json` for the
answer text so far and, as each run ends, its figures. Comparisons are kept in this process's memory
(the last `KEEP`): behind several instances, the page is answered by the instance that ran it.
"""
from __future__ import annotations

import asyncio
import collections
import secrets
import time
from dataclasses import dataclass, field

import orjson
from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from routing.proxy.state import AppState, current

from .models import RequestLog
from .replay import Refused, Replayer, Run, check_names, replayable_body

KEEP = 50  # comparisons kept in memory
REPLAY_PERMISSION = "adminui.replay_requestlog"
VIEW_PERMISSION = "adminui.view_requestlog"


# --- The text of streamed frames, by dialect (pure) -------------------------------------------------


def delta_text(path: str, chunk: bytes) -> str:
    """The answer text in a chunk of a streamed answer of `path`'s dialect (whole frames: the relay
    writes whole frames)."""
    text = []
    for line in chunk.splitlines():
        line = line.strip()
        if line.startswith(b"data:"):
            line = line[5:].strip()
        if not line.startswith(b"{"):
            continue
        try:
            frame = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        text.append(_frame_text(path, frame) if isinstance(frame, dict) else "")
    return "".join(text)


def _frame_text(path: str, frame: dict) -> str:
    if path == "/api/chat":
        return (frame.get("message") or {}).get("content") or ""
    if path == "/api/generate":
        return frame.get("response") or ""
    if path == "/v1/messages":
        delta = frame.get("delta") if frame.get("type") == "content_block_delta" else None
        return (delta or {}).get("text") or ""
    if path == "/v1/responses":
        return frame.get("delta") or "" if frame.get("type") == "response.output_text.delta" else ""
    choice = (frame.get("choices") or [{}])[0] or {}
    return (choice.get("delta") or {}).get("content") or choice.get("text") or ""


# --- Comparisons in memory ---------------------------------------------------------------------------


@dataclass
class Comparison:
    id: str
    original: Run
    runs: list[Run]
    path: str
    started: float = field(default_factory=time.monotonic)
    done: bool = False
    task: asyncio.Task | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {"done": self.done, "original": self.original.as_dict(), "runs": [run.as_dict() for run in self.runs]}


class Comparisons:
    def __init__(self, keep: int = KEEP):
        self._kept: collections.OrderedDict[str, Comparison] = collections.OrderedDict()
        self.keep = keep

    def add(self, comparison: Comparison):
        self._kept[comparison.id] = comparison
        while len(self._kept) > self.keep:
            self._kept.popitem(last=False)

    def get(self, comparison_id: str) -> Comparison | None:
        return self._kept.get(comparison_id)


comparisons = Comparisons()


async def start(state: AppState, log: RequestLog, aliases: list[str]) -> Comparison:
    """Start the runs of `log` on `aliases` (all at once) on this event loop; `Refused` before anything
    is sent when one of them cannot be."""
    body = replayable_body(log)
    await check_names(state, aliases)
    comparison = Comparison(secrets.token_hex(8), Run.of_log(log), [Run(alias, answer="") for alias in aliases],
                            log.endpoint)
    comparisons.add(comparison)
    comparison.task = asyncio.get_running_loop().create_task(_run(state, comparison, log, body))
    return comparison


async def _run(state: AppState, comparison: Comparison, log: RequestLog, body: dict):
    def on_chunk(run: Run, chunk: bytes):
        text = delta_text(comparison.path, chunk)
        if text and run.ttft_ms is None:
            run.ttft_ms = (time.monotonic() - comparison.started) * 1000  # until the run's own figure
        run.answer += text

    with Replayer(state) as replayer:
        try:
            await asyncio.gather(*(replayer.run(log, body, run, on_chunk) for run in comparison.runs),
                                 return_exceptions=True)
        finally:
            comparison.done = True
            for run in comparison.runs:
                if run.outcome == "running":
                    run.outcome, run.error = "error", run.error or "the run did not finish"
            await sync_to_async(replayer.mark, thread_sensitive=False)()


# --- Views -------------------------------------------------------------------------------------------


def replayer_only(view):
    """Staff with the request log's view permission and "run logged requests again" (superusers have
    both)."""
    return staff_member_required(permission_required([VIEW_PERMISSION, REPLAY_PERMISSION],
                                                     raise_exception=True)(view))


@require_POST
@replayer_only
async def replay(request: HttpRequest, request_id: str):
    """Start the runs and go to the comparison; a refusal goes back to the detail page, saying why."""
    log = await sync_to_async(get_object_or_404)(RequestLog, request_id=request_id)
    aliases = [name.strip() for name in request.POST.getlist("alias") if name.strip()]
    if not aliases:
        messages.error(request, "Choose at least one alias or model to run the request on.")
        return redirect("history:detail", request_id)
    try:
        comparison = await start(current(), log, list(dict.fromkeys(aliases)))
    except Refused as exc:
        messages.error(request, f"Not run again: {exc}")
        return redirect("history:detail", request_id)
    return redirect("history:compare", request_id, comparison.id)


@replayer_only
def compare_page(request: HttpRequest, request_id: str, comparison_id: str):
    comparison = comparisons.get(comparison_id)
    if comparison is None or comparison.original.request_id != request_id:
        raise Http404("no such comparison here (comparisons are kept in the memory of the instance that ran them)")
    return render(request, "adminui/compare.html", {"nav": "list", "comparison": comparison,
                                                     "log": get_object_or_404(RequestLog, request_id=request_id)})


@replayer_only
def compare_status(request: HttpRequest, comparison_id: str):
    comparison = comparisons.get(comparison_id)
    if comparison is None:
        raise Http404("no such comparison")
    return JsonResponse(comparison.as_dict())


def choices() -> list[str]:
    """What a logged request can be run on: the table's aliases (not patterns) and the models LM Studio
    listed last (no call to LM Studio: its model lists as the catalogs last fetched them)."""
    state = current()
    table = state.registry.current_table()
    names = {name for name, alias in table.aliases.items() if not alias.is_pattern}
    if table.defaults.passthrough:
        for backend in state.pool.states.values():
            names.update(backend.catalog.last())
    return sorted(names)
