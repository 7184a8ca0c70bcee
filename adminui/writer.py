"""The request log's single background writer: rows in from the event loop, batches out to the database.

A daemon thread rather than an asyncio task, because:
- the ORM is synchronous. A task would hop threads per batch through `sync_to_async`, whose default
  (thread-sensitive) executor is the one thread Django also runs every sync view on, so log writes
  and the admin/history pages would queue behind each other. The thread owns its own connection;
- the event loop never runs any of it: `put` is a lock-protected append, it never waits;
- it outlives the event loop, so the `atexit` flush still works after Daphne's reactor has stopped.

Rows are batched: when a row arrives the thread waits `linger` seconds (50 ms), then writes whatever
has queued up by then (up to `batch_max`) in one transaction. One wake-up and one commit per batch
instead of per request: a single-row transaction costs five times more per row than a batch of 64.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

log = logging.getLogger("routing.request_log")

Batch = list[dict]
_STOP = object()


class LogWriter:
    """Writes queued rows with `write_batch`, then hands each written batch to `after_batch`.

    `housekeeping` (retention) runs in the same thread every `housekeeping_every` seconds.
    """

    def __init__(self, write_batch: Callable[[Batch], None], after_batch: Callable[[Batch], None] | None = None,
                 batch_max: int = 500, housekeeping: Callable[[], None] | None = None,
                 housekeeping_every: float = 300.0, retries: int = 3, linger: float = 0.05,
                 prepare: Callable[[list], Batch] | None = None):
        self.write_batch, self.after_batch = write_batch, after_batch
        self.prepare = prepare  # queued items -> rows, in this thread (off the event loop)
        self.linger = linger
        self.batch_max, self.retries = batch_max, retries
        self.housekeeping, self.housekeeping_every = housekeeping, housekeeping_every
        self.written = self.dropped = self.batches = 0
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._last_housekeeping = float("-inf")

    def put(self, item):
        """Queue one row, or one item `prepare` makes a row of (never blocks); the thread is started
        on first use."""
        if self._thread is None:
            self.start()
        self._queue.put(item)

    def start(self):
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
                self._thread.start()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued row is written (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self, timeout: float = 15.0):
        """Write everything still queued, then end the thread (registered with atexit)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            log.error("request log: %d rows still unwritten at exit", self._queue.qsize())

    def _run(self):
        while True:
            batch, stop = self._next_batch()
            if batch:
                self._write(batch)
            for _ in range(len(batch) + stop):
                self._queue.task_done()
            del batch  # what was queued (a request's bodies: megabytes) is not kept until the next one
            if stop:
                return
            self._maybe_housekeep()

    def _next_batch(self) -> tuple[Batch, bool]:
        """Wait for one row, let others join it for `linger`, then take what is queued, up to batch_max."""
        batch = []
        item = self._queue.get()
        if self.linger and item is not _STOP:
            time.sleep(self.linger)  # a sleep, not a timed get: no wake-up per queued row
        while item is not _STOP:
            batch.append(item)
            if len(batch) >= self.batch_max:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _write(self, items: list):
        batch = self._prepared(items)
        if not self._write_with_retries(batch):
            self._write_one_by_one(batch)
            return
        self.written += len(batch)
        self.batches += 1
        if self.after_batch is not None:
            try:
                self.after_batch(batch)
            except Exception:  # the live view failing must not stop the log
                log.exception("request log: broadcasting a batch failed")

    def _prepared(self, items: list) -> Batch:
        """The rows for queued items; an item that cannot be made a row is dropped (and logged), never
        the batch."""
        if self.prepare is None:
            return items
        try:
            return self.prepare(items)
        except Exception:
            rows = []
            for item in items:
                try:
                    rows += self.prepare([item])
                except Exception:
                    self.dropped += 1
                    log.exception("request log: could not make a row of %r", item)
            return rows

    def _write_with_retries(self, batch: Batch) -> bool:
        for attempt in range(self.retries):
            try:
                self.write_batch(batch)
                return True
            except Exception:  # a locked or briefly unavailable database: wait and try again
                log.warning("request log: writing %d rows failed (attempt %d)", len(batch), attempt + 1,
                            exc_info=attempt == self.retries - 1)
                time.sleep(0.05 * 2 ** attempt)
        return False

    def _write_one_by_one(self, batch: Batch):
        """Last resort: isolate the row(s) that cannot be written so the others are kept."""
        for row in batch:
            try:
                self.write_batch([row])
                self.written += 1
            except Exception:
                self.dropped += 1
                log.exception("request log: dropped row %s", row.get("request_id"))

    def _maybe_housekeep(self):
        now = time.monotonic()
        if self.housekeeping is None or now - self._last_housekeeping < self.housekeeping_every:
            return
        self._last_housekeeping = now
        try:
            self.housekeeping()
        except Exception:
            log.exception("request log: pruning failed")
