"""The request log's observer: every finished exchange becomes one queued row (the only writer).

Registered in `AdminUIConfig.ready` when REQUEST_LOG is on. It runs on the event loop, so it only
converts the exchange (`rows.exchange_to_row`) and queues it; `writer.LogWriter` does the database
work in its own thread and `live.Broadcaster` pushes each written batch to the browsers.
"""
from __future__ import annotations

import atexit

from django.conf import settings

from routing.exchange import Exchange

from .live import Broadcaster
from .models import RequestLog
from .retention import prune_logs
from .rows import LogPolicy, exchange_to_row
from .writer import Batch, LogWriter

_writer: LogWriter | None = None
_broadcaster = Broadcaster()


def write_rows(batch: Batch):
    RequestLog.objects.bulk_create([RequestLog(**row) for row in batch])


def get_writer() -> LogWriter:
    """The process's one writer (created on first use, flushed at exit)."""
    global _writer
    if _writer is None:
        _writer = LogWriter(write_rows, _broadcaster, batch_max=settings.LOG_BATCH_MAX,
                            housekeeping=prune_logs, housekeeping_every=settings.LOG_PRUNE_INTERVAL)
        atexit.register(_writer.stop)
    return _writer


def record_exchange(exchange: Exchange):
    """The observer: convert and queue, never wait."""
    _broadcaster.remember_loop()
    get_writer().put(exchange_to_row(exchange, LogPolicy.from_settings()))
