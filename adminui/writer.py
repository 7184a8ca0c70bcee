"""The request log's single background writer: rows in from the event loop, batches out to the database.

A daemon thread rather than an asyncio task, because:
- the ORM is synchronous. A task would hop threads per batch through `sync_to_async`, whose default
  (thread-sensitive) executor is the one thread Django also runs every sync view on, so log writes
  and the admin/history pages would queue behind each other. The thread owns its own connection;
- the event loop never runs any of it: `put` is a lock-protected append, it never waits;
- it outlives the event loop, so the flush at a stop still works after Daphne's reactor has stopped.

Rows are batched: when a row arrives the thread waits `linger` seconds (50 ms), then writes whatever
has queued up by then (up to `batch_max`) in one transaction. One wake-up and one commit per batch
instead of per request: a single-row transaction costs five times more per row than a batch of 64.

Nothing is dropped in silence. While the database is unavailable (`is_unavailable` says which errors
mean that: a restart, a lock held by another writer, a full disk) the batch in hand is written again,
with a growing pause, until it goes in: rows wait in order, and the queue holds at most `queue_max` of
them; past that a new row is dropped and counted. A row that the database refuses for itself (a
constraint) is dropped and counted after the batch is split to keep the others. Drops are logged once per
`report_every` seconds, and `status()` gives the figures to /metrics and /ready.
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
WRITTEN, SPLIT, GAVE_UP = "written", "split", "gave up"  # how a batch's writing ended


class LogWriter:
    """Writes queued rows with `write_batch`, then hands each written batch to `after_batch`.

    `housekeeping` (retention) runs in the same thread every `housekeeping_every` seconds.
    """

    def __init__(self, write_batch: Callable[[Batch], None], after_batch: Callable[[Batch], None] | None = None,
                 batch_max: int = 500, housekeeping: Callable[[], None] | None = None,
                 housekeeping_every: float = 300.0, retries: int = 3, linger: float = 0.05,
                 prepare: Callable[[list], Batch] | None = None, queue_max: int = 10_000,
                 is_unavailable: Callable[[Exception], bool] = lambda exc: False, pause_max: float = 1.0,
                 report_every: float = 60.0):
        self.write_batch, self.after_batch = write_batch, after_batch
        self.prepare = prepare  # queued items -> rows, in this thread (off the event loop)
        self.linger = linger
        self.batch_max, self.retries = batch_max, retries
        self.housekeeping, self.housekeeping_every = housekeeping, housekeeping_every
        self.queue_max, self.is_unavailable, self.pause_max = queue_max, is_unavailable, pause_max
        self.report_every = report_every
        self.written = self.batches = 0
        # Dropped rows, counted by the thread that drops them (`put` runs on the event loop).
        self._dropped_full = self._dropped_here = 0
        self._last_drop_reason = ""
        self.unavailable = ""  # why the database cannot be written now ("" while it can)
        self._in_hand = 0      # rows taken from the queue and not written yet
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._last_housekeeping = float("-inf")
        self._reported_drops, self._reported_at = 0, float("-inf")
        self._give_up_at: float | None = None  # set by `stop`: waiting for the database ends then

    def put(self, item):
        """Queue one row, or one item `prepare` makes a row of (never blocks); the thread is started
        on first use. A full queue drops the row and counts it."""
        if self._thread is None:
            self.start()
        if self._queue.qsize() >= self.queue_max:
            self._dropped_full += 1
            self._last_drop_reason = f"the queue is full ({self.queue_max} rows waiting for the database)"
            return
        self._queue.put(item)

    @property
    def dropped(self) -> int:
        return self._dropped_full + self._dropped_here

    @property
    def depth(self) -> int:
        """Rows not written yet: queued, and in the batch being written."""
        return self._queue.qsize() + self._in_hand

    def status(self) -> dict:
        return {"queue_depth": self.depth, "rows_written": self.written, "rows_dropped": self.dropped,
                "database": f"unavailable: {self.unavailable}" if self.unavailable else "ok"}

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
        """Write everything still queued, waiting up to `timeout` seconds for an unavailable database,
        then end the thread; what could not be written by then is dropped, counted and logged."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._give_up_at = time.monotonic() + timeout
        self._queue.put(_STOP)
        thread.join(timeout + 5)
        if thread.is_alive():
            log.error("request log: %d rows still unwritten at exit", self.depth)

    def _run(self):
        while True:
            batch, stop = self._next_batch()
            if batch:
                self._write(batch)
            for _ in range(len(batch) + stop):
                self._queue.task_done()
            del batch  # what was queued (a request's bodies: megabytes) is not kept until the next one
            self._report_drops()
            if stop:
                self._report_drops(final=True)
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
        self._in_hand = len(items)
        try:
            batch = self._prepared(items)
            outcome = self._write_until_written(batch)
            if outcome == GAVE_UP:
                self._drop(len(batch), f"the database was still unavailable at the stop ({self.unavailable})")
                return
            if outcome == SPLIT:
                self._write_one_by_one(batch)
                return
            self.written += len(batch)
            self.batches += 1
        finally:
            self._in_hand = 0
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
                    self._drop(1, "a row could not be made")
                    log.exception("request log: could not make a row of %r", item)
            return rows

    def _write_until_written(self, batch: Batch) -> str:
        """Write the batch: while the database is unavailable, again and again (a pause that grows to
        `pause_max`), until it goes in (WRITTEN) or a stop gives up (GAVE_UP); any other failure
        `retries` times, then SPLIT to keep the rows that can be written."""
        attempt, pause = 0, 0.05
        while True:
            try:
                self.write_batch(batch)
            except Exception as exc:
                attempt += 1
                if self.is_unavailable(exc):
                    if not self.unavailable:
                        log.warning("request log: the database is unavailable (%s); %d rows wait for it",
                                    exc, self.depth)
                    self.unavailable = str(exc) or type(exc).__name__
                    if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                        return GAVE_UP
                    self._report_drops()  # rows dropped meanwhile (a full queue) are said while waiting
                elif attempt >= self.retries:
                    log.warning("request log: writing %d rows failed %d times", len(batch), attempt, exc_info=True)
                    return SPLIT
                time.sleep(pause)
                pause = min(pause * 2, self.pause_max)
                continue
            if self.unavailable:
                log.warning("request log: the database is back; writing the %d rows that waited", self.depth)
                self.unavailable = ""
            return WRITTEN

    def _write_one_by_one(self, batch: Batch):
        """Last resort: isolate the row(s) that cannot be written so the others are kept."""
        for row in batch:
            try:
                self.write_batch([row])
                self.written += 1
            except Exception as exc:
                self._drop(1, f"the database refused it ({type(exc).__name__}: {exc})")

    def _drop(self, count: int, why: str):
        self._dropped_here += count
        self._last_drop_reason = why

    def _report_drops(self, final: bool = False):
        """One log line per `report_every` seconds while rows are dropped (and a last one at a stop)."""
        new = self.dropped - self._reported_drops
        now = time.monotonic()
        if new and (final or now - self._reported_at >= self.report_every):
            log.error("request log: %d rows dropped (%d in all): %s", new, self.dropped, self._last_drop_reason)
            self._reported_drops, self._reported_at = self.dropped, now

    def _maybe_housekeep(self):
        now = time.monotonic()
        if self.housekeeping is None or now - self._last_housekeeping < self.housekeeping_every:
            return
        self._last_housekeeping = now
        try:
            self.housekeeping()
        except Exception:
            log.exception("request log: pruning failed")
