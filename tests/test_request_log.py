"""The request log: rows built from exchanges (capping, redaction), the batch writer, retention."""
import logging
import threading
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from adminui.models import RequestLog
from adminui.request_log import write_rows
from adminui.retention import prune_logs
from adminui.rows import REDACTED, LogPolicy, cap, exchange_to_row, redact
from adminui.writer import LogWriter
from routing.core.exchange import DISCONNECTED, Exchange

POLICY = LogPolicy(bodies=True, max_bytes=1000, secrets=("lm-secret-key",))


def finished_exchange(**fields) -> Exchange:
    exchange = Exchange(api="ollama", endpoint="/api/chat", requested_model="coder", alias="coder",
                        upstream_model="qwen2.5-7b-instruct", client="127.0.0.1", user_agent="test",
                        request_body={"model": "coder", "messages": [{"role": "user", "content": "hi"}]},
                        upstream_body={"model": "qwen2.5-7b-instruct", "temperature": 0.2},
                        response_text="Hello!", prompt_tokens=3, completion_tokens=2, ttl=1800)
    for name, value in fields.items():
        setattr(exchange, name, value)
    exchange.timing.mark_first_token()
    exchange.timing.stop()
    return exchange


# --- capping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, max_bytes, kept, cut", [
    ("short", 10, "short", False),
    ("exactly10!", 10, "exactly10!", False),
    ("0123456789abc", 10, "0123456789", True),
    ("ééééé", 5, "éé", True),          # 2-byte characters are never split
])
def test_it_caps_text_at_a_byte_limit_with_a_visible_mark(text, max_bytes, kept, cut):
    capped, was_cut = cap(text, max_bytes)
    assert was_cut is cut
    assert capped.startswith(kept)
    if cut:
        assert capped[len(kept):] == f"\n…[truncated: {len(kept.encode())} of {len(text.encode())} bytes kept]"
    else:
        assert capped == text


def test_a_long_request_body_is_stored_cut_and_the_row_says_so():
    row = exchange_to_row(finished_exchange(request_body={"prompt": "x" * 5000}), POLICY)
    assert row["truncated"] is True
    assert "[truncated: 1000 of" in row["request_body"]
    assert len(row["request_body"].encode()) < 1100
    assert row["upstream_body"].startswith("{")  # the short bodies are whole JSON
    assert orjson.loads(row["upstream_body"]) == {"model": "qwen2.5-7b-instruct", "temperature": 0.2}


def test_bodies_off_keeps_metadata_only():
    row = exchange_to_row(finished_exchange(thinking="hmm", tool_calls=[{"function": {"name": "f"}}]),
                          LogPolicy(bodies=False))
    assert [row[f] for f in ("request_body", "upstream_body", "response_text", "thinking", "tool_calls")] \
        == [""] * 5
    assert row["alias"] == "coder" and row["prompt_tokens"] == 3 and row["ttl"] == 1800


# --- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, secret", [
    ('{"api_key": "sk-123"}', "sk-123"),
    ('{"Authorization": "Bearer abc.def"}', "abc.def"),
    ('{"headers": {"x-api-key": "k-9"}}', "k-9"),
    ('{"apiKey": 12345}', "12345"),
    ('{"password": "hunter2", "model": "m"}', "hunter2"),
    ("curl -H 'Authorization: Bearer tok_42'", "tok_42"),
    ('{"note": "uses lm-secret-key here"}', "lm-secret-key"),
    ('{"api_key": "sk-cut-off-in-the-midd', "sk-cut"),   # a value cut by the cap
])
def test_it_redacts_credentials(text, secret):
    redacted = redact(text, ("lm-secret-key",))
    assert secret not in redacted
    assert REDACTED in redacted


SECRET_NAMES = ["token", "refresh_token", "id_token", "api_token", "github_token", "openai_api_key",
                "private_key", "x-api-key", "apiKey", "client_secret", "password", "passwd", "credentials",
                "Authorization", "proxy-authorization", "AWS_SECRET_ACCESS_KEY"]
SECRET_VALUES = ["s3cr3t-value", 987654321, {"nested": "s3cr3t-value"}, ["s3cr3t-value", "s3cr3t-2"],
                 [{"deep": {"deeper": "s3cr3t-value"}}]]


@pytest.mark.parametrize("name", SECRET_NAMES)
@pytest.mark.parametrize("value", SECRET_VALUES)
@pytest.mark.parametrize("depth", [0, 3])
def test_a_secret_named_field_is_redacted_whatever_its_value_and_depth(name, value, depth):
    body = {name: value, "model": "coder"}
    for _ in range(depth):
        body = {"outer": [body], "after": "kept"}
    row = exchange_to_row(finished_exchange(request_body=body), POLICY)
    stored = row["request_body"]
    assert "s3cr3t" not in stored and "987654321" not in stored
    assert REDACTED in stored and '"model": "coder"' in stored
    if depth:
        assert '"after": "kept"' in stored
    assert orjson.loads(stored) is not None  # still JSON: the value was replaced, not cut


@pytest.mark.parametrize("secret", ["proxy-api-key-123", "backend-key-456", "hunter22"])
def test_the_proxys_own_secrets_are_redacted_wherever_a_client_echoes_them(settings, secret):
    settings.API_KEY, settings.LMSTUDIO_API_KEY = "proxy-api-key-123", "backend-key-456"
    settings.LMSTUDIO_URL = "http://lm:hunter22@127.0.0.1:1234"
    from tests.conftest import use_state

    secrets = use_state(settings).pool.secrets  # what the writer thread is handed
    body = {"messages": [{"role": "user", "content": f"my key is {secret}, keep it"}]}
    row = exchange_to_row(finished_exchange(request_body=body, response_text=f"you said {secret}"),
                          LogPolicy.from_settings(secrets))
    assert secret not in row["request_body"] and secret not in row["response_text"]
    assert "keep it" in row["request_body"]


def test_token_counts_are_not_credentials():
    body = {"max_tokens": 5, "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    assert redact(orjson.dumps(body).decode()) == orjson.dumps(body).decode()


def test_a_body_orjson_cannot_write_still_gives_a_row():
    deep: list = []
    for _ in range(300):
        deep = [deep]
    row = exchange_to_row(finished_exchange(request_body={"x": deep, "n": 1 << 70}), POLICY)
    assert row["request_body"].startswith("[not stored")


def test_redaction_keeps_ordinary_fields():
    assert redact('{"model": "coder", "keep_alive": "5m"}') == '{"model": "coder", "keep_alive": "5m"}'


def test_a_row_never_holds_a_key_even_in_a_truncated_body():
    body = {"api_key": "sk-" + "a" * 2000, "messages": []}
    row = exchange_to_row(finished_exchange(request_body=body, error="upstream said Bearer xyz"), POLICY)
    assert "aaaa" not in row["request_body"] and "[truncated:" in row["request_body"]
    assert "xyz" not in row["error"]


def test_a_row_has_every_field_of_the_exchange():
    exchange = finished_exchange(stream=True, tool_calls=[{"function": {"name": "get_weather"}}],
                                 backend="gpu-box")
    exchange.fail(499, "client disconnected before the answer was complete", DISCONNECTED)
    row = exchange_to_row(exchange, POLICY)
    log = RequestLog(**row)  # every key is a model field
    assert log.request_id == exchange.id and log.started_at == exchange.started_at
    assert (log.status, log.outcome, log.stream) == (499, "client disconnected", True)
    assert log.duration_ms > 0 and log.ttft_ms is not None
    assert "get_weather" in log.tool_calls and log.response_text == "Hello!"
    assert log.backend == "gpu-box"


# --- the batch writer --------------------------------------------------------------------------


def test_the_writer_batches_rows_that_queue_up_while_it_writes():
    written, release = [], threading.Event()

    def slow_sink(batch):
        release.wait(5)
        written.append(list(batch))

    writer = LogWriter(slow_sink, batch_max=100, linger=0)
    writer.put({"n": 0})          # the first batch blocks in the sink...
    time.sleep(0.05)
    for n in range(1, 251):       # ...while 250 more rows queue up
        writer.put({"n": n})
    release.set()
    assert writer.wait_idle(5)
    assert [len(b) for b in written] == [1, 100, 100, 50]
    assert [row["n"] for batch in written for row in batch] == list(range(251))
    writer.stop()


def test_rows_arriving_together_are_written_in_one_batch():
    written = []
    writer = LogWriter(lambda batch: written.append(len(batch)), linger=0.2)
    for n in range(20):
        writer.put({"n": n})
    assert writer.wait_idle(5)
    writer.stop()
    assert written == [20]


def test_stop_writes_everything_still_queued():
    written = []
    writer = LogWriter(lambda batch: written.extend(batch))
    for n in range(1000):
        writer.put({"n": n})
    writer.stop()
    assert len(written) == 1000 and writer.written == 1000


def test_a_failing_batch_is_retried_then_split_so_good_rows_survive():
    attempts, written = [], []

    def sink(batch):
        attempts.append(len(batch))
        if any(row.get("bad") for row in batch):
            raise ValueError("constraint")
        written.extend(batch)

    writer = LogWriter(sink, retries=2)
    writer._queue.put({"n": 1})
    writer._queue.put({"n": 2, "bad": True})
    writer._queue.put({"n": 3})
    writer.start()
    assert writer.wait_idle(5)
    assert [row["n"] for row in written] == [1, 3]
    assert (writer.written, writer.dropped) == (2, 1)
    writer.stop()


def test_each_written_batch_is_handed_on_for_the_live_view():
    seen = []
    writer = LogWriter(lambda batch: None, after_batch=lambda batch: seen.append(len(batch)))
    writer.put({"n": 1})
    assert writer.wait_idle(5)
    writer.stop()
    assert seen == [1]


@pytest.mark.django_db(transaction=True)
def test_the_writer_stores_rows_in_the_database_from_its_own_thread():
    writer = LogWriter(write_rows)
    rows = [exchange_to_row(finished_exchange(), POLICY) for _ in range(30)]
    for row in rows:
        writer.put(row)
    writer.stop()
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == {r["request_id"] for r in rows}


# --- retention ---------------------------------------------------------------------------------


def make_logs(n: int, now: datetime, step: timedelta):
    RequestLog.objects.bulk_create([
        RequestLog(request_id=f"r{i}", started_at=now - i * step, api="ollama", endpoint="/api/chat",
                   status=200, outcome="ok", duration_ms=1.0) for i in range(n)])


@pytest.mark.django_db
def test_prune_deletes_rows_older_than_the_retention():
    now = datetime.now(timezone.utc)
    make_logs(10, now, timedelta(days=1))           # r0 today ... r9 nine days ago
    assert prune_logs(days=3, max_rows=0, now=now) == 6
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["r0", "r1", "r2", "r3"]


@pytest.mark.django_db
def test_prune_keeps_only_the_newest_rows_beyond_the_row_limit():
    now = datetime.now(timezone.utc)
    make_logs(10, now, timedelta(seconds=1))
    assert prune_logs(days=0, max_rows=4, now=now) == 6
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["r0", "r1", "r2", "r3"]
    assert prune_logs(days=0, max_rows=4, now=now) == 0


@pytest.mark.django_db
def test_the_prunelogs_command_uses_the_settings(settings, capsys):
    from django.core.management import call_command

    settings.LOG_RETENTION_DAYS, settings.LOG_MAX_ROWS = 0, 3
    make_logs(5, datetime.now(timezone.utc), timedelta(seconds=1))
    call_command("prunelogs")
    assert "deleted 2 request log rows" in capsys.readouterr().out
    assert RequestLog.objects.count() == 3


def test_a_huge_body_is_pruned_before_it_is_written_out_and_the_row_says_so():
    """An agent's 8 MB conversation: the row keeps about LOG_BODY_MAX_BYTES of it, marked as cut."""
    body = {"model": "coder", "messages": [{"role": "user", "content": "x" * 400_000} for _ in range(20)]}
    row = exchange_to_row(finished_exchange(request_body=body, upstream_body=body), POLICY)
    for name in ("request_body", "upstream_body"):
        assert row[name].startswith('{\n  "model": "coder",\n  "messages": [')
        assert "[truncated: 1000 of more than" in row[name] and len(row[name].encode()) < 1100
    assert row["truncated"] is True


@pytest.mark.parametrize("value, budget, expected, cut", [
    ({"a": "short"}, 100, {"a": "short"}, False),
    ({"a": "x" * 50}, 20, {"a": "x" * 13}, True),   # 20 less the key and punctuation
    ([1, 2, 3], 100, [1, 2, 3], False),
    (list(range(100)), 40, list(range(5)), True),
    ({"k1": "v" * 30, "k2": "w"}, 30, {"k1": "v" * 22}, True),
])
def test_pruning_keeps_the_start_of_a_body(value, budget, expected, cut):
    from adminui.rows import pruned

    assert pruned(value, budget) == (expected, cut)


def test_the_writer_makes_rows_in_its_thread_and_drops_only_what_cannot_be_made_one():
    written = []

    def prepare(items):
        if any(item == "bad" for item in items):
            raise ValueError("not an exchange")
        return [{"n": item, "thread": threading.current_thread().name} for item in items]

    writer = LogWriter(written.extend, prepare=prepare, linger=0.1)
    for item in (1, "bad", 3):
        writer.put(item)
    assert writer.wait_idle(5)
    writer.stop()
    assert [row["n"] for row in written] == [1, 3] and writer.dropped == 1
    assert {row["thread"] for row in written} == {"request-log-writer"}


@pytest.mark.parametrize("body", [
    {"content": 'say "hi" to \\"them\\" ' * 20, "api_key": "sk-abcdefgh", "n": 1},
    {"content": '"' * 5000, "password": "hunter2"},   # cut inside a string full of escaped quotes
    {"nested": {"token": ["a\"]", {"b": "}"}], "after": "kept"}, "key": "k-123"},
])
def test_redaction_reads_strings_full_of_quotes_right(body):
    row = exchange_to_row(finished_exchange(request_body=body), POLICY)
    text = row["request_body"]
    assert "sk-abcdefgh" not in text and "hunter2" not in text and "k-123" not in text
    assert ("after" not in body.get("nested", {})) or '"after": "kept"' in text


# --- the writer while the database is unavailable -------------------------------------------------


class Unavailable(Exception):
    """Stands for OperationalError: the database restarting, locked, its disk full."""


class FlakyDatabase:
    """A sink that is unavailable until `up.set()`."""

    def __init__(self):
        self.up, self.rows = threading.Event(), []

    def __call__(self, batch):
        if not self.up.is_set():
            raise Unavailable("connection refused")
        self.rows.extend(batch)


def waiting_writer(database, **options) -> LogWriter:
    return LogWriter(database, linger=0, pause_max=0.05, is_unavailable=lambda exc: isinstance(exc, Unavailable),
                     **options)


def test_rows_wait_in_order_for_an_unavailable_database_and_none_is_lost():
    database = FlakyDatabase()
    writer = waiting_writer(database, queue_max=1000)
    for n in range(300):
        writer.put({"n": n})
    time.sleep(0.3)
    assert writer.status()["database"] == "unavailable: connection refused"
    assert writer.depth == 300 and writer.dropped == 0
    database.up.set()
    assert writer.wait_idle(5)
    assert [row["n"] for row in database.rows] == list(range(300))
    assert writer.status() == {"queue_depth": 0, "rows_written": 300, "rows_dropped": 0, "database": "ok"}
    writer.stop()


def test_a_full_queue_drops_new_rows_counts_them_and_says_so_once(caplog):
    database = FlakyDatabase()
    writer = waiting_writer(database, queue_max=10, batch_max=5, report_every=60)
    with caplog.at_level(logging.ERROR, logger="routing.request_log"):
        for n in range(50):
            writer.put({"n": n})
            time.sleep(0.002)
        time.sleep(0.2)
    assert writer.depth <= 15 and writer.dropped == 50 - writer.depth
    reports = [r.getMessage() for r in caplog.records if "rows dropped" in r.getMessage()]
    assert len(reports) == 1 and "the queue is full (10 rows waiting for the database)" in reports[0]
    database.up.set()
    assert writer.wait_idle(5)
    assert writer.written + writer.dropped == 50
    writer.stop()


def test_a_stop_waits_for_the_database_then_counts_what_it_could_not_write(caplog):
    database = FlakyDatabase()
    writer = waiting_writer(database)
    for n in range(20):
        writer.put({"n": n})
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="routing.request_log"):
        writer.stop(timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 3
    assert (writer.written, writer.dropped) == (0, 20)
    assert any("20 rows dropped" in r.getMessage() and "still unavailable at the stop" in r.getMessage()
               for r in caplog.records)
