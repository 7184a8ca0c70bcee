"""Logged requests run again on other aliases, through the proxy's own pipeline, and compared.

A replay is the stored client request with its model replaced by an alias, served by
`routing.proxy.pipeline.proxy` with the endpoint of the logged path: the same dialect, the alias's
overrides, load settings, backends and limits. It is logged like any request; its row is marked with
the original's id (`RequestLog.replay_of`) once the request log has written it. A request whose body
the log did not keep whole (cut at LOG_BODY_MAX_BYTES, secrets redacted, bodies off) is refused, and so
is a name the route table does not serve: nothing is sent.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
from django.http import HttpRequest

from routing.api.views import CHAT, GENERATE, V1_CHAT, V1_COMPLETIONS, V1_MESSAGES, V1_RESPONSES
from routing.core.errors import ProxyError
from routing.core.exchange import Exchange
from routing.proxy.pipeline import Endpoint, proxy
from routing.proxy.state import AppState

from .conversation import parse_json
from .models import RequestLog
from .rows import REDACTED

ENDPOINTS: dict[str, Endpoint] = {e.path: e for e in (CHAT, GENERATE, V1_CHAT, V1_COMPLETIONS, V1_RESPONSES,
                                                      V1_MESSAGES)}
USER_AGENT = "lmstudio-proxy replay of {id}"


class Refused(Exception):
    """A replay that is not sent, and why (a message for people)."""


@dataclass
class Run:
    """One request's figures, for the comparison: the original's or a replay's."""

    alias: str
    request_id: str = ""
    status: int | None = None
    outcome: str = "running"
    error: str = ""
    ttft_ms: float | None = None
    tokens_per_second: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_ms: float | None = None
    answer: str = ""
    tool_calls: list | None = None

    @classmethod
    def of_log(cls, log: RequestLog) -> Run:
        calls = parse_json(log.tool_calls)
        return cls(log.alias or log.requested_model, log.request_id, log.status, log.outcome, log.error,
                   log.ttft_ms, log.tokens_per_second, log.prompt_tokens, log.completion_tokens, log.duration_ms,
                   log.response_text, calls if isinstance(calls, list) else [])

    def finish(self, exchange: Exchange):
        self.request_id, self.status, self.outcome, self.error = (exchange.id, exchange.status, exchange.outcome,
                                                                   exchange.error)
        self.ttft_ms, self.tokens_per_second = exchange.ttft_ms, exchange.tokens_per_second
        self.prompt_tokens, self.completion_tokens = exchange.prompt_tokens, exchange.completion_tokens
        self.duration_ms, self.answer, self.tool_calls = (exchange.duration_ms, exchange.response_text,
                                                          exchange.tool_calls)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def replayable_body(log: RequestLog) -> dict:
    """The client request as logged, or `Refused` when the log cannot give it back as it was sent."""
    if log.endpoint not in ENDPOINTS:
        raise Refused(f"{log.request_id}: {log.endpoint} requests cannot be run again (only chats and "
                      f"completions)")
    if log.truncated:
        raise Refused(f"{log.request_id}: its logged body was cut at LOG_BODY_MAX_BYTES; running the rest "
                      f"would not be the same request")
    if REDACTED in log.request_body:
        raise Refused(f"{log.request_id}: secrets were redacted from its logged body; it cannot be sent as it was")
    body = parse_json(log.request_body)
    if not isinstance(body, dict):
        raise Refused(f"{log.request_id}: its body was not logged (LOG_BODIES=false?)")
    return body


async def check_names(state: AppState, names: list[str]):
    """`Refused` unless the route table serves every name as an alias, a pattern, or (with pass-through)
    a model LM Studio has; a name only the fallback alias would catch is refused too."""
    table = await state.registry.table()
    upstream = None
    for name in names:
        route = table.resolve(name)
        if route is not None and route.via == "passthrough":
            if upstream is None:
                try:
                    upstream = await state.pool.models_everywhere(table)
                except ProxyError as exc:
                    raise Refused(f"{name!r}: not an alias, and LM Studio's models cannot be listed: "
                                  f"{exc.message}") from None
            route = route if name in upstream else None
        if route is None:
            raise Refused(f"{name!r} is not an alias or a model of LM Studio")


class Replayer:
    """Runs replays on the application's state and remembers which new request replays which.
    `marks` is what `mark` writes to the log once the rows are there."""

    def __init__(self, state: AppState):
        self.state = state
        self.finished: dict[str, Exchange] = {}
        self.marks: dict[str, str] = {}

    def __enter__(self) -> Replayer:
        self.state.observers.add(self._observe)
        return self

    def __exit__(self, *exc):
        self.state.observers.remove(self._observe)

    def _observe(self, exchange: Exchange):
        if exchange.user_agent.startswith(USER_AGENT.format(id="")):
            self.finished[exchange.id] = exchange

    async def run(self, log: RequestLog, body: dict, run: Run, on_chunk=None) -> Run:
        """Send `body` with `run.alias` as its model through the logged endpoint; `run` filled as it ends.
        `on_chunk(run, bytes)` sees each streamed chunk as it comes (the live comparison)."""
        endpoint = ENDPOINTS[log.endpoint]
        request = HttpRequest()
        request.method, request.path = "POST", endpoint.path
        request.META = {"REMOTE_ADDR": "replay", "CONTENT_TYPE": "application/json",
                        "HTTP_USER_AGENT": USER_AGENT.format(id=log.request_id)}
        request._body = orjson.dumps({**body, "model": run.alias})
        response = await proxy(request, endpoint)
        run.request_id = response["X-Request-Id"]
        self.marks[run.request_id] = log.request_id
        if response.streaming:
            async for chunk in response.streaming_content:
                if on_chunk is not None:
                    on_chunk(run, chunk)
        run.finish(self.finished.pop(run.request_id))
        return run

    def mark(self, timeout: float = 10.0) -> int:
        """Set `replay_of` on the replays' rows, waiting (bounded) for the request log to write them;
        returns how many were marked."""
        deadline, marked = time.monotonic() + timeout, 0
        while self.marks:
            for new_id, original in list(self.marks.items()):
                if RequestLog.objects.filter(request_id=new_id).update(replay_of=original):
                    marked += 1
                    del self.marks[new_id]
            if not self.marks or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return marked


async def replay_all(state: AppState, logs: list[RequestLog],
                     aliases: list[str]) -> list[tuple[RequestLog, list[Run]]]:
    """Every log run on every alias (the aliases of one log at once, the logs one after another);
    `Refused` before anything is sent when one of them cannot be."""
    bodies = [replayable_body(log) for log in logs]
    await check_names(state, aliases)
    results = []
    with Replayer(state) as replayer:
        try:
            for log, body in zip(logs, bodies):
                runs = await asyncio.gather(*(replayer.run(log, body, Run(alias)) for alias in aliases))
                results.append((log, list(runs)))
        finally:
            await asyncio.to_thread(replayer.mark)
    return results


COLUMNS = ("alias", "status", "TTFT", "tok/s", "prompt", "completion", "total", "answer")


def comparison(runs: list[Run], answer_width: int = 60) -> str:
    """The runs as an aligned text table; the answer is its first line (or the tool calls' names)."""
    def cell(value, unit=""):
        return "—" if value is None else f"{value:.0f}{unit}" if isinstance(value, float) else str(value)

    rows = [COLUMNS] + [(
        run.alias, f"{run.status} {run.outcome}" if run.outcome != "ok" else str(run.status),
        cell(run.ttft_ms, " ms"), "—" if run.tokens_per_second is None else f"{run.tokens_per_second:.1f}",
        cell(run.prompt_tokens), cell(run.completion_tokens), cell(run.duration_ms, " ms"),
        first_line(run)[:answer_width]) for run in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join([c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
                               + [row[-1]]) for row in rows)


def first_line(run: Run) -> str:
    if run.error and not run.answer:
        return run.error.splitlines()[0] if run.error else ""
    line = run.answer.strip().splitlines()[0] if run.answer.strip() else ""
    calls = ", ".join((c.get("function") or {}).get("name", "?") for c in run.tool_calls or ())
    return f"{line} [tools: {calls}]".strip() if calls else line
