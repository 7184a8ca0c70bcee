"""LM Studio's download jobs (`/api/v1/models/download`, 0.4+): the calls, and the jobs this process
started, so that a second pull of a model follows its running job instead of starting another.

Calls have their own short timeout (not UPSTREAM_READ_TIMEOUT, which allows for a model load), and a
job LM Studio no longer knows (`job_not_found`, after a restart) is `JobGone`, not an error page.
"""
from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx
import orjson

from routing.config.downloads import Download
from routing.core.errors import UpstreamError
from routing.lmstudio.backends import BackendState
from routing.lmstudio.client import check_response

CALL_TIMEOUT = 30.0  # seconds for each call to LM Studio's download API
RUNNING = ("downloading", "paused")


class JobGone(Exception):
    """LM Studio no longer knows a download job (it restarted)."""


async def call(state: BackendState, method: str, path: str, body: dict | None = None,
               model: str = "") -> dict:
    """One call to a backend's download API, with its own timeout; `job_not_found` is JobGone."""
    upstream = state.upstream
    timeout = httpx.Timeout(CALL_TIMEOUT, connect=upstream.timeout.connect, pool=upstream.timeout.pool)
    response = await upstream.read(method, path, body, timeout=timeout)
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = None
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and error.get("code") == "job_not_found":
        raise JobGone(path)
    check_response(response, model)
    if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
        raise UpstreamError(f"LM Studio sent an unexpected answer to {path}: {response.content[:200]!r}")
    return answer


class RunningJobs:
    """LM Studio's running download jobs this process started, by (backend, download): a second pull
    of the same model follows the running job."""

    def __init__(self):
        self._jobs: dict[tuple[str, Download], str] = {}
        self._locks: dict[tuple[str, Download], asyncio.Lock] = {}

    async def start(self, state: BackendState, download: Download, requested: str) -> dict:
        """The running job's status, or a new job's (or `already_downloaded`)."""
        key = (state.name, download)
        # Two pulls of one model at once must not start two jobs; pulls of other models do not wait.
        async with self._locks.setdefault(key, asyncio.Lock()):
            job_id = self._jobs.get(key)
            if job_id is not None:
                try:
                    return await self.status(state, download, job_id)
                except JobGone:
                    self._jobs.pop(key, None)
            answer = await call(state, "POST", "/api/v1/models/download", download.lmstudio_body(), requested)
            if answer.get("job_id") and answer["status"] in RUNNING:
                self._jobs[key] = str(answer["job_id"])
            return answer

    async def status(self, state: BackendState, download: Download, job_id: str) -> dict:
        """A job's status; a job that ended is forgotten."""
        answer = await call(state, "GET", f"/api/v1/models/download/status/{quote(job_id, safe='')}")
        answer.setdefault("job_id", job_id)
        if answer["status"] not in RUNNING:
            self._jobs.pop((state.name, download), None)
        return answer
