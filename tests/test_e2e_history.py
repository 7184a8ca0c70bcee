"""End to end: requests through the real server end up in the request log, exactly as they happened.

Rows are written asynchronously, so every lookup polls the server's SQLite database with a bounded wait.
"""
import threading
import time

import httpx
import orjson
import pytest

from tests.conftest import db_query as query
from tests.conftest import start_proxy, stop

pytestmark = pytest.mark.e2e


def find_log(server, request_id: str, timeout: float = 15.0) -> dict:
    """The row for one request id, waiting (bounded) for the background writer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(server, "SELECT * FROM adminui_requestlog WHERE request_id = ?", request_id)
        if rows:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"no request log row for {request_id} after {timeout}s")


def test_a_non_streamed_chat_is_logged_with_what_was_sent_upstream(proxy_server, fake):
    response = httpx.post(f"{proxy_server.url}/api/chat", timeout=30, json={
        "model": "coder", "stream": False, "options": {"temperature": 0.9},
        "messages": [{"role": "user", "content": "log me"}]})
    answer = response.json()
    row = find_log(proxy_server, response.headers["X-Request-Id"])
    assert (row["api"], row["endpoint"], row["alias"], row["requested_model"], row["upstream_model"]) == \
        ("ollama", "/api/chat", "coder", "coder", "qwen2.5-7b-instruct")
    assert (row["status"], row["outcome"], row["stream"], row["error"]) == (200, "ok", 0, "")
    assert row["response_text"] == answer["message"]["content"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (answer["prompt_eval_count"], answer["eval_count"])
    assert row["ttl"] == 1800 and row["duration_ms"] > 0 and row["client"] == "127.0.0.1"
    assert "python-httpx" in row["user_agent"]
    [sent] = [r["json"] for r in fake.requests("/v1/chat/completions")]
    assert orjson.loads(row["upstream_body"]) == sent      # exactly the parameters LM Studio got
    assert orjson.loads(row["request_body"])["options"] == {"temperature": 0.9}


def test_a_streamed_openai_chat_is_logged_with_usage_and_first_token_time(proxy_server, fake):
    with httpx.stream("POST", f"{proxy_server.url}/v1/chat/completions", timeout=30, json={
            "model": "tiny", "stream": True, "messages": [{"role": "user", "content": "stream me"}]}) as response:
        body = response.read().decode()
        request_id = response.headers["X-Request-Id"]
    assert body.rstrip().endswith("data: [DONE]")
    row = find_log(proxy_server, request_id)
    assert (row["api"], row["stream"], row["status"], row["outcome"]) == ("openai", 1, 200, "ok")
    assert row["response_text"] == "Hello from llama-3.2-1b-instruct! You said: stream me"
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0   # usage asked for upstream
    assert row["tokens_per_second"] > 0 and 0 < row["ttft_ms"] <= row["duration_ms"]
    [sent] = [r["json"] for r in fake.requests("/v1/chat/completions")]
    assert sent["stream_options"] == {"include_usage": True}


def test_an_unknown_model_is_logged_as_a_404(proxy_server, fake):
    response = httpx.post(f"{proxy_server.url}/api/chat", timeout=30, json={
        "model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 404
    row = find_log(proxy_server, response.headers["X-Request-Id"])
    assert (row["status"], row["outcome"], row["alias"]) == (404, "error", "")
    assert row["error"] == "model 'no-such-model' not found"


def test_an_lmstudio_error_is_logged_with_its_message(proxy_server, fake):
    fake.script(status=500, error="boom")
    response = httpx.post(f"{proxy_server.url}/v1/chat/completions", timeout=30, json={
        "model": "coder", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code >= 500
    row = find_log(proxy_server, response.headers["X-Request-Id"])
    assert (row["status"], row["outcome"]) == (response.status_code, "error")
    assert "boom" in row["error"]


def test_a_stream_cut_by_the_client_is_logged_with_its_partial_answer(proxy_server, fake):
    fake.script(delay=0.05, tokens=200)
    with httpx.stream("POST", f"{proxy_server.url}/api/chat", timeout=30, json={
            "model": "coder", "messages": [{"role": "user", "content": "long"}]}) as response:
        request_id = response.headers["X-Request-Id"]
        lines = response.iter_lines()
        first = [orjson.loads(next(lines)) for _ in range(3)]
    # leaving the block closed the connection mid-stream
    row = find_log(proxy_server, request_id)
    assert (row["status"], row["outcome"], row["stream"]) == (499, "client disconnected", 1)
    received = "".join(chunk["message"]["content"] for chunk in first)
    assert row["response_text"].startswith(received)
    assert 0 < len(row["response_text"]) < len(" ".join(f"tok{i}" for i in range(200)))


def test_secrets_sent_by_a_client_are_never_stored(proxy_server, fake):
    response = httpx.post(f"{proxy_server.url}/v1/chat/completions", timeout=30,
                          headers={"Authorization": "Bearer sk-live-SECRET1"},
                          json={"model": "coder", "api_key": "sk-live-SECRET2",
                                "messages": [{"role": "user", "content": "x"}]})
    row = find_log(proxy_server, response.headers["X-Request-Id"])
    assert "SECRET" not in orjson.dumps(row).decode()
    assert '"api_key": "[redacted]"' in row["request_body"]


def test_no_row_is_lost_under_load_and_the_rest_is_flushed_at_shutdown(fake_lmstudio, tmp_path):
    server = start_proxy(tmp_path, fake_lmstudio.url)
    ids, lock = [], threading.Lock()

    def client(n: int):
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for i in range(10):
                r = http.post("/api/generate", json={"model": "tiny", "prompt": f"{n}-{i}", "stream": i % 2 == 0})
                with lock:
                    ids.append(r.headers["X-Request-Id"])

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop(server.proc)  # SIGTERM: the writer flushes what is queued before the process exits
    logged = {row["request_id"] for row in query(server, "SELECT request_id FROM adminui_requestlog")}
    assert len(ids) == 80 and logged == set(ids)


def test_request_log_off_writes_nothing(fake_lmstudio, tmp_path):
    server = start_proxy(tmp_path, fake_lmstudio.url, REQUEST_LOG="false")
    try:
        response = httpx.post(f"{server.url}/api/generate", timeout=30,
                              json={"model": "tiny", "prompt": "x", "stream": False})
        assert response.status_code == 200 and response.headers["X-Request-Id"]
    finally:
        stop(server.proc)
    assert query(server, "SELECT COUNT(*) AS n FROM adminui_requestlog") == [{"n": 0}]


def test_bodies_off_logs_metadata_only(fake_lmstudio, tmp_path):
    server = start_proxy(tmp_path, fake_lmstudio.url, LOG_BODIES="false")
    try:
        response = httpx.post(f"{server.url}/api/generate", timeout=30,
                              json={"model": "tiny", "prompt": "private", "stream": False})
        row = find_log(server, response.headers["X-Request-Id"])
    finally:
        stop(server.proc)
    assert row["upstream_model"] == "llama-3.2-1b-instruct" and row["completion_tokens"] > 0
    assert (row["request_body"], row["upstream_body"], row["response_text"]) == ("", "", "")


def test_the_writer_prunes_beyond_log_max_rows_on_its_own(fake_lmstudio, tmp_path):
    server = start_proxy(tmp_path, fake_lmstudio.url, LOG_MAX_ROWS=3, LOG_PRUNE_INTERVAL=0)
    ids = []
    try:
        for i in range(6):
            response = httpx.post(f"{server.url}/api/generate", timeout=30,
                                  json={"model": "tiny", "prompt": str(i), "stream": False})
            ids.append(response.headers["X-Request-Id"])
            find_log(server, ids[-1])                     # one batch per request: a prune after each
    finally:
        stop(server.proc)
    logged = [row["request_id"] for row in query(
        server, "SELECT request_id FROM adminui_requestlog ORDER BY started_at")]
    assert logged == ids[-3:]
