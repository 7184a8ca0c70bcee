"""The request log's observer: every finished exchange becomes one queued row (the only writer).

Registered in `AdminUIConfig.ready` when REQUEST_LOG is on. It runs on the event loop, so it only
queues the exchange; `writer.LogWriter` converts it (`rows.exchange_to_row`) and does the database work
in its own thread, and `live.Broadcaster` pushes each written batch to the browsers.
"""
from __future__ import annotations

import atexit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField

from routing.exchange import Exchange

from .live import broadcaster
from .models import RequestLog
from .retention import prune_logs
from .rows import LogPolicy, exchange_to_row
from .writer import Batch, LogWriter

_writer: LogWriter | None = None


def _insert_sql() -> tuple[str, list]:
    fields = [f for f in RequestLog._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(RequestLog._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    return sql, fields


def write_rows(batch: Batch):
    """Insert a batch in one transaction with one `executemany`.

    Not `bulk_create`: its per-field value preparation costs ~150 µs a row, five times the insert
    itself, and that is CPU taken from the event loop (the GIL). Rows come from `exchange_to_row`, so
    their values are already plain; only datetimes need the backend's adaptation.
    """
    sql, fields = _insert_sql()
    adapt = connection.ops.adapt_datetimefield_value
    params = [[adapt(row[f.attname]) if isinstance(f, DateTimeField) else row[f.attname] for f in fields]
              for row in batch]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)


def get_writer() -> LogWriter:
    """The process's one writer (created on first use, flushed at exit)."""
    global _writer
    if _writer is None:
        _writer = LogWriter(write_rows, broadcaster, batch_max=settings.LOG_BATCH_MAX,
                            housekeeping=prune_logs, housekeeping_every=settings.LOG_PRUNE_INTERVAL,
                            prepare=exchanges_to_rows)
        atexit.register(_writer.stop)
    return _writer


def exchanges_to_rows(exchanges: list[Exchange]) -> list[dict]:
    """Rows for finished exchanges, made in the writer's thread: serialising bodies (megabytes for an
    agent's long conversation) never holds up the event loop."""
    policy = LogPolicy.from_settings()
    return [exchange_to_row(exchange, policy) for exchange in exchanges]


def record_exchange(exchange: Exchange):
    """The observer: queue the finished exchange (no longer changed by anyone), never wait."""
    broadcaster.remember_loop()
    get_writer().put(exchange)
