"""Storage faults under Daphne: SQLite held by another writer, a full disk, and Redis going away with a
history page open. The API answers throughout; rows wait for the database and are written after, and
what cannot wait (a full queue) is counted in /metrics and said in the log, never dropped in silence."""
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import RedisServer, admin_login, db_query, make_superuser, start_proxy, stop
from tests.test_ops import sample

pytestmark = pytest.mark.e2e

CHAT = {"model": "coder", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def load_for(server, seconds: float) -> tuple[list[str], list[int]]:
    """Requests one after another for `seconds`: (request ids of those answered 200, other statuses)."""
    answered, other, deadline = [], [], time.monotonic() + seconds
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            response = client.post(f"{server.url}/api/chat", json=CHAT)
            if response.status_code == 200:
                answered.append(response.headers["x-request-id"])
            else:
                other.append(response.status_code)
    return answered, other


def metrics(server) -> str:
    return httpx.get(f"{server.url}/metrics", timeout=10).text


def wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sqlite_held_by_another_writer_for_ten_seconds_loses_no_row(fake_lmstudio, tmp_path):
    server = start_proxy(tmp_path, fake_lmstudio.url)
    try:
        holder = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None, timeout=1)
        holder.execute("BEGIN EXCLUSIVE")
        held_at = time.monotonic()
        answered, other = load_for(server, 10)
        queued = sample(metrics(server), "requestlog_queue_depth")
        holder.execute("COMMIT")
        released = time.monotonic()
        holder.close()
        assert not other and len(answered) > 50  # the API did not wait for the database
        assert queued > 0 and time.monotonic() - held_at >= 10
        wait_for(lambda: len(db_query(server, "SELECT request_id FROM adminui_requestlog")) >= len(answered))
        written = {row["request_id"] for row in db_query(server, "SELECT request_id FROM adminui_requestlog")}
        assert written == set(answered)
        assert sample(metrics(server), "requestlog_rows_dropped_total") == 0
        print(f"\nSQLite locked 10 s: {len(answered)} answered, {len(written)} rows written, 0 dropped, "
              f"in {time.monotonic() - released:.1f} s after the lock")
    finally:
        stop(server.proc)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MB tmpfs for the database (as root, which CI is; skipped elsewhere)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last block."""
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_drops_only_what_the_queue_cannot_hold_and_says_so(fake_lmstudio, tmp_path, tiny_disk):
    server = start_proxy(tmp_path, fake_lmstudio.url, DATABASE_URL=f"sqlite:///{tiny_disk / 'db.sqlite3'}",
                         LOG_QUEUE_MAX=40, LOG_BODIES="false")
    try:
        before, _ = load_for(server, 0.5)
        filler = fill(tiny_disk)
        answered, other = load_for(server, 4)
        assert not other  # the API keeps serving on a full disk
        text = metrics(server)
        dropped, queued = sample(text, "requestlog_rows_dropped_total"), sample(text, "requestlog_queue_depth")
        # read after the figures: a row written in between is counted twice, never missed (SQLite may still
        # write a few rows into pages it already had once the disk is full)
        written = {row["request_id"] for row in db_query(server, "SELECT request_id FROM adminui_requestlog")}
        assert dropped > 0 and queued > 0
        # each answered row is written, waiting, or counted as dropped (one may still be on its way)
        assert dropped + queued >= len(set(answered) - written) - 1
        filler.unlink()  # room again: what waited is written
        wait_for(lambda: sample(metrics(server), "requestlog_queue_depth") == 0)
        written = {row["request_id"] for row in db_query(server, "SELECT request_id FROM adminui_requestlog")}
        assert set(before) <= written
        final = sample(metrics(server), "requestlog_rows_dropped_total")
        assert len(set(answered) - written) == final  # every row not written is counted as dropped
        log = (tmp_path / "server.log").read_text()
        assert "rows dropped" in log and "queue is full" in log
        assert httpx.post(f"{server.url}/api/chat", json=CHAT, timeout=30).status_code == 200
        print(f"\nfull disk: {len(answered)} answered while full, {len(answered) - final:.0f} rows written after, "
              f"{final:.0f} dropped and counted (LOG_QUEUE_MAX=40)")
    finally:
        stop(server.proc)


@pytest.fixture
def own_redis():
    redis = RedisServer()
    redis.start()
    yield redis
    redis.stop()


@pytest.mark.browser
def test_redis_going_away_turns_the_live_history_to_reloading_and_back(fake_lmstudio, tmp_path, own_redis, page):
    server = start_proxy(tmp_path, fake_lmstudio.url, REDIS_URL=own_redis.url)
    try:
        admin_login(page, server, *make_superuser(server))
        page.goto(f"{server.url}/history/")
        page.wait_for_selector("#live-status[data-connected=yes]")
        own_redis.stop()
        page.wait_for_selector("#live-status[data-connected=no]", timeout=15_000)
        assert "reloading" in page.locator("#live-status").inner_text()
        during = httpx.post(f"{server.url}/api/chat", json=CHAT, timeout=30)
        assert during.status_code == 200  # the API does not need Redis
        page.locator(f"tr[data-request-id='{during.headers['x-request-id']}']").wait_for(timeout=15_000)  # reloaded
        own_redis.start()
        page.wait_for_selector("#live-status[data-connected=yes]", timeout=20_000)
        after = httpx.post(f"{server.url}/api/chat", json=CHAT, timeout=30)
        page.locator(f"tr[data-request-id='{after.headers['x-request-id']}']").wait_for()  # live again
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    finally:
        stop(server.proc)
