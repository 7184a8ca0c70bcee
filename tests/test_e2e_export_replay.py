"""End to end: requests in the four dialects logged by the real server, exported (`manage.py exportlogs`
and the history's download) and run again on other aliases (`manage.py replay`) at the fake LM Studio."""
import csv
import io
import re
import sqlite3
import subprocess

import httpx
import orjson
import pytest

from adminui.export import CSV_FIELDS
from tests.conftest import PY, ROOT, db_path, make_superuser
from tests.test_e2e_history import find_log
from tests.test_export import BODIES, WEATHER_TOOL, fine_tuning_problems

pytestmark = pytest.mark.e2e
PATHS = {"ollama-chat": "/api/chat", "openai-chat": "/v1/chat/completions", "responses": "/v1/responses",
         "anthropic": "/v1/messages"}


def manage(server, *args) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=server.env, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def logged(proxy_server, fake_lmstudio) -> dict[str, str]:
    """One request of each dialect (a tool call and its result in the conversation), and one whose answer is
    a tool call; their request ids by name."""
    ids = {}
    for name, (_, path, body) in BODIES.items():
        response = httpx.post(f"{proxy_server.url}{path}", json={**body, "stream": name != "openai-chat"},
                              timeout=30, headers={"anthropic-version": "2023-06-01"})
        assert response.status_code == 200, response.text
        ids[name] = response.headers["X-Request-Id"]
    response = httpx.post(f"{proxy_server.url}/api/chat", timeout=30, json={
        "model": "tiny", "stream": False, "tools": [WEATHER_TOOL],
        "messages": [{"role": "user", "content": "What is the weather in Oslo?"}]})
    ids["answered-with-a-tool-call"] = response.headers["X-Request-Id"]
    for request_id in ids.values():
        find_log(proxy_server, request_id)
    return ids


def test_every_dialect_is_exported_as_fine_tuning_jsonl(proxy_server, logged, tmp_path):
    out = tmp_path / "export.jsonl"
    result = manage(proxy_server, "exportlogs", "--format", "jsonl", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = {line["metadata"]["id"]: line for line in map(orjson.loads, out.read_bytes().splitlines())}
    for name, (api, path, _) in BODIES.items():
        line = lines[logged[name]]
        assert fine_tuning_problems(line) == [], name
        assert (line["metadata"]["dialect"], line["metadata"]["endpoint"]) == (api, path)
        roles = [m["role"] for m in line["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "assistant"], name
        assert line["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'
        assert line["messages"][3] == {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1"}
        assert line["messages"][-1] == {"role": "assistant", "content": "The tool said: 18 C, sunny"}
        assert line["tools"] == [WEATHER_TOOL] and line["metadata"]["tokens"]["completion"] > 0
    called = lines[logged["answered-with-a-tool-call"]]["messages"][-1]
    assert called["tool_calls"][0]["function"]["name"] == "weather"
    assert isinstance(called["tool_calls"][0]["function"]["arguments"], str)
    assert fine_tuning_problems(lines[logged["answered-with-a-tool-call"]]) == []


def test_the_csv_export_has_one_row_per_request_with_the_list_columns(proxy_server, logged):
    result = manage(proxy_server, "exportlogs", "--format", "csv", "--alias", "coder", "--since", "1h")
    rows = {r["request_id"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert list(next(iter(rows.values()))) == list(CSV_FIELDS)
    assert {logged[name] for name in BODIES} <= set(rows)
    assert logged["answered-with-a-tool-call"] not in rows                       # the alias filter
    row = rows[logged["anthropic"]]
    assert (row["api"], row["endpoint"], row["upstream_model"], row["status"]) == \
        ("anthropic", "/v1/messages", "qwen2.5-7b-instruct", "200")


def test_the_history_download_serves_the_same_jsonl_to_a_logged_in_user(proxy_server, logged):
    user, password = make_superuser(proxy_server)
    with httpx.Client(base_url=proxy_server.url, timeout=30) as http:
        http.get("/admin/login/")
        http.post("/admin/login/", data={"username": user, "password": password, "next": "/history/",
                                         "csrfmiddlewaretoken": http.cookies["csrftoken"]},
                  headers={"Referer": f"{proxy_server.url}/admin/login/"})
        response = http.get("/history/export/", params={"format": "jsonl", "api": "anthropic"})
    assert response.status_code == 200 and response.headers["X-Export-Skipped"] == "truncated=0, redacted=0"
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert logged["anthropic"] in {line["metadata"]["id"] for line in lines}
    assert {line["metadata"]["dialect"] for line in lines} == {"anthropic"}


@pytest.mark.parametrize("name", list(BODIES))
def test_replay_sends_the_logged_request_on_another_alias_and_links_the_new_row(proxy_server, fake, logged,
                                                                                 name):
    result = manage(proxy_server, "replay", logged[name], "--alias", "tiny", "--alias", "coder")
    assert result.returncode == 0, result.stderr
    sent = [r["json"] for r in fake.requests("/v1/chat/completions")]
    by_model = {body["model"]: body for body in sent}
    assert set(by_model) == {"llama-3.2-1b-instruct", "qwen2.5-7b-instruct"}
    coder = by_model["qwen2.5-7b-instruct"]                     # coder's overrides applied to the replay
    assert (coder["temperature"], coder["top_p"]) == (0.2, 0.9)
    assert coder["messages"][0]["content"].startswith("You are terse.")
    assert [m["role"] for m in by_model["llama-3.2-1b-instruct"]["messages"]][-2:] == ["assistant", "tool"]
    replays = db_query_replays(proxy_server, logged[name])
    assert sorted(r["alias"] for r in replays) == ["coder", "tiny"]
    assert {r["endpoint"] for r in replays} == {PATHS[name]} and {r["status"] for r in replays} == {200}
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("alias"))
    assert re.split(r"\s{2,}", lines[header]) == ["alias", "status", "TTFT", "tok/s", "prompt", "completion",
                                                  "total", "answer"]
    table = [re.split(r"\s{2,}", line) for line in lines[header + 1:]]
    assert [row[0] for row in table] == ["coder", "tiny", "coder"]           # the original first
    assert all(row[1] == "200" and row[-1] == "The tool said: 18 C, sunny" for row in table)


def db_query_replays(server, original: str) -> list[dict]:
    with sqlite3.connect(db_path(server)) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM adminui_requestlog WHERE replay_of = ?", (original,))]


def test_replay_refuses_an_unknown_alias_and_a_truncated_body_and_sends_nothing(proxy_server, fake, logged):
    result = manage(proxy_server, "replay", logged["ollama-chat"], "--alias", "no-such-alias")
    assert result.returncode != 0
    assert "'no-such-alias' is not an alias or a model of LM Studio (nothing was sent)" in result.stderr
    with sqlite3.connect(db_path(proxy_server)) as db:
        db.execute("UPDATE adminui_requestlog SET truncated = 1 WHERE request_id = ?", (logged["openai-chat"],))
    try:
        result = manage(proxy_server, "replay", logged["openai-chat"], "--alias", "tiny")
    finally:
        with sqlite3.connect(db_path(proxy_server)) as db:
            db.execute("UPDATE adminui_requestlog SET truncated = 0 WHERE request_id = ?",
                       (logged["openai-chat"],))
    assert result.returncode != 0 and "cut at LOG_BODY_MAX_BYTES" in result.stderr
    assert fake.requests("/v1/chat/completions") == []
