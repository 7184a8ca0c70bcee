"""API keys per person against the real server (Daphne, the fake LM Studio): the official clients with a
key, a scoped key refused, a key in the path with no header, revocation seen within about a second, and
no usable key in the database or the server's log."""
import subprocess
import time

import httpx
import pytest

from tests.conftest import PY, ROOT, db_path, db_query, make_key, start_proxy, stop
from tests.test_ops import sample

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server(fake, tmp_path):
    server = start_proxy(tmp_path, fake.url, API_KEY="operator-secret-0123456789")
    yield server
    stop(server.proc)


def test_the_official_clients_work_with_a_key_and_a_scoped_key_is_refused_other_models(server):
    import anthropic
    import ollama
    import openai

    key = make_key(server, "ann")
    scoped = make_key(server, "bob", "--aliases", "coder")
    time.sleep(1.2)  # the running server reads the keys again within about a second

    client = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {key}"})
    assert client.chat(model="tiny", messages=HI).message.content
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    assert oai.chat.completions.create(model="coder", messages=HI).choices[0].message.content
    assert oai.responses.create(model="coder", input="hi").output_text
    claude = anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0)
    assert claude.messages.create(model="coder", max_tokens=50, messages=HI).content

    narrow = openai.OpenAI(base_url=f"{server.url}/v1", api_key=scoped, max_retries=0)
    assert [m.id for m in narrow.models.list()] == ["coder"]
    with pytest.raises(openai.PermissionDeniedError) as info:
        narrow.chat.completions.create(model="tiny", messages=HI)
    assert "bob" in str(info.value) and "tiny" in str(info.value)
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic.Anthropic(base_url=server.url, api_key=scoped, max_retries=0).messages.create(
            model="qwen2.5-7b-instruct", max_tokens=50, messages=HI)
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=server.url, headers={"Authorization": f"Bearer {scoped}"}).chat(model="tiny",
                                                                                           messages=HI)
    assert refused.value.status_code == 403
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key=key + "x", max_retries=0).models.list()

    time.sleep(1.5)  # the log writer's batch
    names = {row["key_name"] for row in db_query(server, "SELECT key_name FROM adminui_requestlog")}
    assert {"ann", "bob"} <= names


def test_a_key_in_the_path_serves_copilots_calls_without_a_header_and_is_never_written(server):
    key = make_key(server, "copilot", "--aliases", "coder")
    time.sleep(1.2)
    base = f"{server.url}/k/{key}"
    assert httpx.get(f"{base}/api/version").status_code == 200
    tags = httpx.get(f"{base}/api/tags")
    assert tags.status_code == 200 and [m["name"] for m in tags.json()["models"]] == ["coder:latest"]
    assert httpx.post(f"{base}/api/show", json={"model": "coder"}).status_code == 200
    echoed = [{"role": "user", "content": f"my key is {key}"}]  # redacted from the history too
    chat = httpx.post(f"{base}/v1/chat/completions", json={"model": "coder", "messages": echoed}, timeout=30)
    assert chat.status_code == 200, chat.text
    assert httpx.post(f"{base}/v1/chat/completions", json={"model": "tiny", "messages": HI}).status_code == 403
    assert httpx.get(f"{server.url}/k/lmp_not-a-key/api/tags").status_code == 401
    assert httpx.get(f"{server.url}/api/tags").status_code == 401
    time.sleep(1.5)  # the request log's batch, last_used_at
    assert_never_written(server, key)


def assert_never_written(server, key: str, server_log: bool = True):
    """Neither the database (with its write-ahead log) nor the server's log holds the key."""
    database = db_path(server)
    logs = (database.parent / "server.log",) if server_log else ()
    for written in (database, database.with_name(database.name + "-wal"), *logs):
        if written.exists():
            assert key.encode() not in written.read_bytes(), f"the key is in {written}"
    rows = db_query(server, "SELECT endpoint, key_name FROM adminui_requestlog")
    assert rows and all(not row["endpoint"].startswith("/k/") for row in rows)


def test_a_key_in_the_path_works_on_the_stock_path_too(fake, tmp_path):
    server = start_proxy(tmp_path, fake.url, FAST_PATH="false")
    try:
        key = make_key(server, "stock")
        time.sleep(1.2)
        assert httpx.get(f"{server.url}/api/tags").status_code == 401
        assert httpx.get(f"{server.url}/k/{key}/api/tags").status_code == 200
        chat = httpx.post(f"{server.url}/k/{key}/api/chat", json={"model": "coder", "messages": HI,
                                                                   "stream": False}, timeout=30)
        assert chat.status_code == 200, chat.text
        time.sleep(1.5)
        # Not the server's log: stock Daphne writes its access line from the raw path (docs/security.md).
        assert_never_written(server, key, server_log=False)
    finally:
        stop(server.proc)


def test_runservers_access_lines_mask_a_key_in_the_path_on_the_stock_path(fake, tmp_path):
    server = start_proxy(tmp_path, fake.url, runserver=True, FAST_PATH="false", DEBUG="true")
    try:
        key = make_key(server, "runserver")
        time.sleep(1.2)
        assert httpx.get(f"{server.url}/k/{key}/api/tags").status_code == 200
        assert httpx.post(f"{server.url}/k/{key}/api/chat", json={"model": "coder", "messages": HI,
                                                                   "stream": False}, timeout=30).status_code == 200
        time.sleep(1.5)  # the request log's batch
        log = (tmp_path / "server.log").read_text()
        assert "GET /k/***/api/tags 200" in log  # the access line is there, its key masked
        assert_never_written(server, key)
    finally:
        stop(server.proc)


def test_a_revoked_key_is_refused_within_about_a_second(server):
    key = make_key(server, "dan")
    time.sleep(1.2)
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{server.url}/api/tags", headers=headers).status_code == 200
    subprocess.run([PY, "manage.py", "keys", "revoke", "dan"], cwd=ROOT, env=server.env, check=True,
                   capture_output=True)
    revoked = time.monotonic()
    while httpx.get(f"{server.url}/api/tags", headers=headers).status_code == 200:
        assert time.monotonic() - revoked < 3, "a revoked key was still served after 3 s"
        time.sleep(0.05)
    assert time.monotonic() - revoked < 2.5
    listed = subprocess.run([PY, "manage.py", "keys", "list"], cwd=ROOT, env=server.env, check=True,
                            capture_output=True, text=True).stdout
    assert "dan" in listed and key not in listed and key[:12] in listed


def test_limits_refuse_with_429_and_retry_after_and_never_cut_a_stream(server, fake):
    import openai

    key = make_key(server, "eve", "--max-concurrent", "1", "--requests-per-minute", "3")
    time.sleep(1.2)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    fake.script(tokens=20, delay=0.05)  # a stream of about a second
    stream = client.chat.completions.create(model="coder", messages=HI, stream=True)
    first = next(iter(stream))
    with pytest.raises(openai.RateLimitError) as busy:
        client.chat.completions.create(model="coder", messages=HI)
    assert "max concurrent 1" in str(busy.value) and busy.value.response.headers["retry-after"] == "1"
    assert busy.value.body["code"] == "rate_limit_exceeded"
    text = (first.choices[0].delta.content or "") + "".join(c.choices[0].delta.content or "" for c in stream
                                                            if c.choices)
    assert text.count("tok") == 20  # the stream in progress ended whole
    fake.script()
    client.chat.completions.create(model="coder", messages=HI)  # the 2nd counted (a refused one is not)
    client.chat.completions.create(model="coder", messages=HI)  # the 3rd of the minute
    refused = httpx.post(f"{server.url}/api/chat", headers={"Authorization": f"Bearer {key}"},
                         json={"model": "coder", "messages": HI, "stream": False})
    assert refused.status_code == 429 and "requests per minute 3" in refused.json()["error"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_requests_with_a_wrong_key_are_counted_and_said_in_the_log_without_the_key(server):
    wrong = "lmp_" + "w" * 43
    for _ in range(3):
        refused = httpx.post(f"{server.url}/v1/messages", headers={"x-api-key": wrong},
                             json={"model": "coder", "max_tokens": 5, "messages": HI})
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{server.url}/k/{wrong}/api/tags").status_code == 401
    metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer operator-secret-0123456789"})
    assert sample(metrics.text, "proxy_refused_total", status="401") == 4
    log = (server.routes.parent / "server.log").read_text()
    said = [line[line.index("refused"):] for line in log.splitlines() if "without a valid API key" in line]
    assert said == ["refused 1 request(s) without a valid API key; the latest: POST /v1/messages from 127.0.0.1"]
    assert wrong not in log
