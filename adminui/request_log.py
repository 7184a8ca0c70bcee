"""The request log's observer: every finished exchange becomes one queued row (the only writer).

Made by the application's state when REQUEST_LOG is on (`settings.EXCHANGE_OBSERVERS`). It runs on the
event loop, so it only queues the exchange; `writer.LogWriter` converts it (`rows.exchange_to_row`) and
does the database work in its own thread, and `live.Broadcaster` pushes each written batch to the
browsers.
"""
from __future__ import annotations

import atexit

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import DateTimeField
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from routing.core.exchange import Exchange

from .live import broadcaster
from .models import RequestLog
from .retention import prune_logs
from .rows import LogPolicy, exchange_to_row
from .writer import Batch, LogWriter


def _insert_sql() -> tuple[str, list]:
    fields = [f for f in RequestLog._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(RequestLog._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    return sql, fields


def write_rows(batch: Batch):
    """Insert a batch in one transaction with one `executemany`, on the writer thread's own connection.

    Not `bulk_create`: its per-field value preparation costs ~150 µs a row, five times the insert
    itself, and that is CPU taken from the event loop (the GIL). Rows come from `exchange_to_row`, so
    their values are already plain; only datetimes need the backend's adaptation.

    A connection that failed is closed, so the next attempt makes a new one and the log resumes by
    itself after a database restart. (No request cycle closes this thread's connection, as Django does
    for views; `close_old_connections` here would close it before every batch, as CONN_MAX_AGE is 0.)
    """
    sql, fields = _insert_sql()
    adapt = connection.ops.adapt_datetimefield_value
    params = [[adapt(row[f.attname]) if isinstance(f, DateTimeField) else row[f.attname] for f in fields]
              for row in batch]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, params)
    except DatabaseError:
        connection.close()
        raise


def prune():
    """Retention, on the writer thread's connection; a connection that failed is closed, as above (a
    failure outside a transaction would otherwise leave it broken for every later batch)."""
    try:
        prune_logs()
    except DatabaseError:
        connection.close()
        raise


def database_unavailable(exc: Exception) -> bool:
    """A failure that says the database cannot be written now (down, restarting, locked by another
    writer, its disk full), not that these rows are wrong: they wait for it."""
    return isinstance(exc, (OperationalError, InterfaceError))


class RequestLogObserver:
    """The request log as an observer of the application's state (`settings.EXCHANGE_OBSERVERS`): each
    finished exchange is queued, never waited for; its one `LogWriter` thread makes the rows (with the
    state's snapshot of the secrets to redact) and writes them in batches. Its figures are in the state's
    /metrics (`requestlog_queue_depth`, `requestlog_rows_dropped_total`) and in /ready."""

    name = "request_log"

    def __init__(self, state):
        pool = state.pool
        self.writer = LogWriter(write_rows, broadcaster, batch_max=settings.LOG_BATCH_MAX,
                                housekeeping=prune, housekeeping_every=settings.LOG_PRUNE_INTERVAL,
                                prepare=lambda exchanges: exchanges_to_rows(exchanges, pool.secrets),
                                queue_max=settings.LOG_QUEUE_MAX, is_unavailable=database_unavailable)
        state.metrics.registry.register(WriterMetrics(self.writer))
        atexit.register(self.close)

    def __call__(self, exchange: Exchange):
        """Queue the finished exchange (no longer changed by anyone), never wait."""
        broadcaster.remember_loop()
        self.writer.put(exchange)

    def status(self) -> dict:
        return self.writer.status()

    def close(self, timeout: float = 15.0):
        """Write what is queued (at a stop), waiting up to `timeout` seconds for the database."""
        self.writer.stop(timeout)


class WriterMetrics:
    """The writer's figures as Prometheus metrics, read when /metrics is asked."""

    def __init__(self, writer: LogWriter):
        self.writer = writer

    def collect(self):
        yield GaugeMetricFamily("requestlog_queue_depth", "Request-log rows waiting to be written.",
                                value=self.writer.depth)
        yield CounterMetricFamily("requestlog_rows_written", "Request-log rows written.", value=self.writer.written)
        yield CounterMetricFamily("requestlog_rows_dropped", "Request-log rows dropped: the queue was full, or "
                                  "the database refused them.", value=self.writer.dropped)


def exchanges_to_rows(exchanges: list[Exchange], secrets: tuple[str, ...] = ()) -> list[dict]:
    """Rows for finished exchanges, made in the writer's thread: serialising bodies (megabytes for an
    agent's long conversation) never holds up the event loop. `secrets` is a snapshot, swapped whole by
    the event loop (a tuple read is atomic): this thread never walks the loop's own structures."""
    policy = LogPolicy.from_settings(secrets)
    return [exchange_to_row(exchange, policy) for exchange in exchanges]
