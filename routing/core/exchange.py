"""One proxied request, as it happened: what was asked, where it went, how it ended, how long it took.

The pipeline fills an `Exchange` as the request goes; when the request is over (answered, failed or
cut off by the client) it is handed once to every observer (`routing.proxy.observers`), which is where the
request log and the metrics live.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable


@dataclass
class Timing:
    """Monotonic timestamps in nanoseconds."""

    start: int = field(default_factory=time.perf_counter_ns)
    first_token: int | None = None
    end: int | None = None

    def mark_first_token(self):
        if self.first_token is None:
            self.first_token = time.perf_counter_ns()

    def stop(self):
        if self.end is None:
            self.end = time.perf_counter_ns()

    def _end(self) -> int:
        return self.end if self.end is not None else time.perf_counter_ns()

    def total_ns(self) -> int:
        return self._end() - self.start

    def first_token_ns(self) -> int:
        return (self.first_token or self._end()) - self.start

    def generation_ns(self) -> int:
        return self._end() - (self.first_token or self._end())


def new_request_id() -> str:
    """32 hex digits, in time order: the Unix time in milliseconds (12), then 80 random bits (20).

    The request log's unique index on the id takes each new row at its end. A random id (uuid4) put each
    row on a random page of that index: an insert cost 24 µs on an empty log and 64 µs at 150,000 rows,
    and went on growing, CPU taken from the proxy's core (SQLite WAL, batches of 30 rows)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


# How an exchange ended, besides its HTTP status.
OK, FAILED, DISCONNECTED = "ok", "error", "client disconnected"


@dataclass
class Exchange:
    api: str                      # the client's dialect: "ollama" | "openai" | "responses" | "anthropic"
    endpoint: str                 # e.g. "/api/chat"
    id: str = field(default_factory=new_request_id)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    timing: Timing = field(default_factory=Timing)
    client: str = ""
    key_name: str = ""            # whose API key: a person's key name, "operator" for API_KEY, "" for none
    grant: Any = field(default=None, repr=False)  # that key's KeyGrant (routing.security.keys), or None
    own_secrets: tuple = field(default=(), repr=False)  # the request's own key: redacted from the log
    user_agent: str = ""
    requested_model: str = ""
    upstream_model: str = ""
    alias: str = ""
    backend: str = ""             # the LM Studio server that answered (routing.lmstudio.backends)
    stream: bool = False
    status: int = 200
    outcome: str = OK
    error: str = ""
    ttl: int | None = None
    request_body: Any = None      # what the client sent (parsed JSON)
    upstream_body: Any = None     # what was sent to LM Studio, after overrides
    response_text: str = ""
    thinking: str = ""
    tool_calls: list = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # The model load this request waited for (routing.lmstudio.instances): settings, instance, time
    load: dict | None = None
    instance: tuple | None = None  # (backend, instance id, model id) the request is aimed at
    _releases: list = field(default_factory=list, repr=False)

    def on_release(self, callback: Callable[[], None]):
        """Run `callback` once when the exchange is over (a backend's open-request count)."""
        self._releases.append(callback)

    def release(self):
        releases, self._releases = self._releases, []
        for callback in releases:
            callback()

    def body_for(self, backend: str, body: dict) -> dict:
        """The upstream body for one backend: an instance id chosen on another backend means nothing
        here, so a request that falls back goes with the plain model id."""
        if self.instance is None or self.instance[0] == backend:
            return body
        return {**body, "model": self.instance[2]}

    def fail(self, status: int, message: str, outcome: str = FAILED):
        self.status, self.error, self.outcome = status, message, outcome

    @property
    def duration_ms(self) -> float:
        return self.timing.total_ns() / 1e6

    @property
    def ttft_ms(self) -> float | None:
        return self.timing.first_token_ns() / 1e6 if self.timing.first_token else None

    @property
    def tokens_per_second(self) -> float | None:
        gen = self.timing.generation_ns()
        if not self.completion_tokens or gen <= 0:
            return None
        return self.completion_tokens / (gen / 1e9)
