"""What the admin asks LM Studio: its model list (for the model picker; every backend's) and a tiny
test request (to the backend the alias would use first).

The admin is sync Django; these run the async upstream client through `async_to_sync`, with short
timeouts so an unreachable LM Studio gives a message, not a hung page. Not on the proxy's hot path.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from asgiref.sync import async_to_sync

from routing.config.overrides import apply_route
from routing.config.table import Defaults, Route, RouteTable
from routing.core.errors import ProxyError, UpstreamTimeout
from routing.lmstudio.client import Upstream
from routing.proxy.state import current

MODEL_LIST_TIMEOUT = 5.0    # seconds the model picker waits for LM Studio
TEST_TIMEOUT = 30.0         # seconds "test this alias" waits (it may load the model first)
TEST_PROMPT = "Say hello in five words."


def model_ids(table: RouteTable | None = None) -> tuple[list[str], str]:
    """(LM Studio's model ids, of every backend of `table` (default: routes.yaml's), "") or ([], a
    message saying why the list is unavailable)."""
    try:
        models = async_to_sync(_within)(current().pool.models_everywhere(table or current().registry.file_table()),
                                        MODEL_LIST_TIMEOUT)
    except ProxyError as exc:
        return [], f"LM Studio's model list is unavailable ({exc.message}); type the model id."
    return sorted(models), ""


@dataclass(frozen=True)
class TestResult:
    sent: dict
    answer: str = ""
    error: str = ""
    seconds: float = 0.0


def try_route(route: Route, defaults: Defaults, upstream: Upstream | None = None) -> TestResult:
    """Send a tiny chat request through `route`, with its overrides, to `upstream` (the backend it
    would try first; the default one when not given), and report what came back."""
    body = {"model": route.model, "messages": [{"role": "user", "content": TEST_PROMPT}],
            "max_tokens": 32, "stream": False}
    sent = apply_route(body, route, defaults)
    started = time.monotonic()
    try:
        upstream = upstream or current().pool.default.upstream
        reply = async_to_sync(_within)(upstream.json("POST", "/v1/chat/completions", sent, model=route.model),
                                       TEST_TIMEOUT)
    except ProxyError as exc:
        return TestResult(sent, error=exc.message, seconds=time.monotonic() - started)
    choices = reply.get("choices") or [{}]
    answer = (choices[0].get("message") or {}).get("content") or "(an empty answer)"
    return TestResult(sent, answer=answer, seconds=time.monotonic() - started)


async def _within(awaitable, seconds: float):
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        raise UpstreamTimeout(f"LM Studio did not answer within {seconds:g}s") from None
