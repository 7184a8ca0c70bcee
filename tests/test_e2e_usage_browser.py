"""The usage page against the real server: requests through the proxy with two people's keys, then, in
a real headless Chromium, the rows per key × alias, the key filter, the chart, the CSV download and a
row's link to its requests; and the same numbers from PostgreSQL as from SQLite."""
import csv
import io
import subprocess
import time
import uuid

import httpx
import psycopg
import pytest

from tests.conftest import (
    PY,
    ROOT,
    admin_login,
    db_query,
    make_key,
    make_superuser,
    proxy_env,
    start_proxy,
    stop,
    wait_for_key,
)

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]
# Who asks for what: (key, model, how many times); the unknown model is a 404, logged as pass-through.
TRAFFIC = [("ann", "coder", 3), ("ann", "tiny", 1), ("bob", "tiny", 2), ("bob", "no-such-model", 1)]


@pytest.fixture(scope="module")
def server(fake_lmstudio, tmp_path_factory):
    server = start_proxy(tmp_path_factory.mktemp("usage"), fake_lmstudio.url)
    yield server
    stop(server.proc)


@pytest.fixture(scope="module")
def traffic(server, fake_lmstudio) -> str:
    """TRAFFIC sent through the proxy and logged; the UTC day it was logged on."""
    fake_lmstudio.reset()
    keys = {name: make_key(server, name) for name in ("ann", "bob")}
    for key in keys.values():
        wait_for_key(server, key)
    ids = []
    for name, model, times in TRAFFIC:
        for _ in range(times):
            response = httpx.post(f"{server.url}/api/chat", timeout=30, headers={
                "Authorization": f"Bearer {keys[name]}"}, json={"model": model, "stream": True, "messages": HI})
            assert response.status_code == (404 if model == "no-such-model" else 200), response.text
            ids.append(response.headers["X-Request-Id"])
    deadline, marks = time.monotonic() + 15, ",".join("?" * len(ids))
    while len(rows := db_query(server, f"SELECT started_at FROM adminui_requestlog WHERE request_id IN ({marks})",
                               *ids)) < len(ids):
        assert time.monotonic() < deadline, "the request log was not written"
        time.sleep(0.1)
    return rows[0]["started_at"][:10]  # stored in UTC


def row_cell(page, day: str, key: str, alias: str, column: str = "requests") -> str:
    row = f"#usage-rows tr[data-day='{day}'][data-key='{key}'][data-alias='{alias}']"
    return page.locator(f"{row} td.{column}").inner_text()


@pytest.mark.browser
def test_the_usage_page_shows_each_key_and_alias_and_narrows_to_a_key(server, traffic, page):
    day = traffic
    violations = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    admin_login(page, server, *make_superuser(server))
    page.goto(f"{server.url}/history/")
    page.click("header nav a[href='/history/usage/']")
    page.wait_for_url(f"{server.url}/history/usage/")

    assert page.locator("#usage-rows tbody tr").count() == 4
    assert [row_cell(page, day, *group) for group in (("ann", "coder"), ("ann", "tiny"), ("bob", "tiny"),
                                                      ("bob", ""))] == ["3", "1", "2", "1"]
    assert row_cell(page, day, "bob", "", "errors") == "1" and row_cell(page, day, "bob", "tiny", "errors") == "0"
    assert "(no alias)" in page.locator("#usage-rows tr[data-key='bob'][data-alias='']").inner_text()
    assert page.locator("#usage-keys tr[data-key='ann'] td.requests").inner_text() == "4"
    assert page.locator("#usage-keys tfoot td.requests").inner_text() == "7"
    # The chart: one bar segment a key today, each with its figures as a tooltip.
    assert page.locator("#usage-chart").is_visible()
    assert "Tokens" in page.locator("#usage-chart > title").text_content()
    tooltips = page.locator("#usage-chart rect title").all_text_contents()
    assert len(tooltips) == 2 and any(t.startswith(f"{day} · ann:") and t.endswith("4 requests") for t in tooltips)

    page.select_option("#usage-key", "bob")
    page.click("#usage-filters button[type=submit]")
    page.wait_for_url("**/history/usage/?*key=bob*")
    keys = page.locator("#usage-rows tbody tr").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert keys == ["bob", "bob"]
    assert page.locator("#usage-chart rect").count() == 1

    with page.expect_download() as download:
        page.click("#usage-csv")                            # the same rows, under the same filter
    name = download.value.suggested_filename
    assert name.startswith("usage-") and name.endswith(".csv")
    with open(download.value.path(), newline="") as saved:
        rows = list(csv.DictReader(saved))
    assert {(r["key"], r["alias"], r["requests"], r["errors"]) for r in rows} == {("bob", "tiny", "2", "0"),
                                                                                  ("bob", "", "1", "1")}
    everything = page.request.get(f"{server.url}/history/usage/?format=csv")  # the session's cookies
    assert everything.ok and everything.headers["content-type"].startswith("text/csv")
    counts = {(r["key"], r["alias"]): r["requests"] for r in csv.DictReader(io.StringIO(everything.text()))}
    assert counts == {("ann", "coder"): "3", ("ann", "tiny"): "1", ("bob", "tiny"): "2", ("bob", ""): "1"}

    page.click("#usage-rows tr[data-key='bob'][data-alias='tiny'] td a")  # that row's requests in the history
    page.wait_for_url("**/history/?*")
    assert page.locator("tr[data-request-id]").count() == 2
    assert violations == []


# The same rows through SQLite and PostgreSQL: days cut at UTC midnight, the percentiles, the sums.
REPORT = """
from datetime import datetime, timedelta, timezone
from adminui import usage
from adminui.filters import UsageFilter
from adminui.models import RequestLog
midnight = datetime(2026, 11, 22, tzinfo=timezone.utc)
rows = [("ann", "coder", -0.5, 100.0, 200), ("ann", "coder", -3600, 300.0, 404), ("ann", "coder", 0, 50.0, 200),
        ("", "", 60, None, 502), ("bob", "tiny", 120, 20.0, 200), ("bob", "tiny", 86400, 1.0, 200)]
RequestLog.objects.bulk_create([RequestLog(
    request_id=f"r{i}", started_at=midnight + timedelta(seconds=at), api="ollama", endpoint="/api/chat",
    key_name=key, alias=alias, status=status, outcome="ok", duration_ms=1.0, ttft_ms=ttft, prompt_tokens=10,
    completion_tokens=5, tokens_per_second=ttft and ttft / 10)
    for i, (key, alias, at, ttft, status) in enumerate(rows)])
form = UsageFilter({"start": "2026-11-21", "end": "2026-11-22"})
assert form.is_valid(), form.errors
print("".join(usage.csv_lines(usage.report(form.apply(RequestLog.objects.all())).rows)), end="")
"""
EXPECTED = """\
day,key,alias,requests,errors,prompt_tokens,completion_tokens,ttft_median_ms,ttft_p95_ms,tokens_per_second_median
2026-11-22,,,1,1,10,5,,,
2026-11-22,ann,coder,1,0,10,5,50.0,50.0,5.0
2026-11-22,bob,tiny,1,0,10,5,20.0,20.0,2.0
2026-11-21,ann,coder,2,1,20,10,200.0,290.0,20.0
"""


def usage_csv_from(env: dict) -> str:
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    done = subprocess.run([PY, "manage.py", "shell", "--no-imports", "-c", REPORT], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True)
    return done.stdout.replace("\r\n", "\n")


def test_the_numbers_are_the_same_on_sqlite_and_postgresql(postgres_url, tmp_path):
    name = f"usage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    (tmp_path / "routes.yaml").write_text("aliases: {}\n")
    sqlite = proxy_env(tmp_path, "http://127.0.0.1:9")
    postgres = {**sqlite, "DATABASE_URL": postgres_url.rsplit("/", 1)[0] + f"/{name}"}
    assert usage_csv_from(sqlite) == EXPECTED
    assert usage_csv_from(postgres) == EXPECTED
