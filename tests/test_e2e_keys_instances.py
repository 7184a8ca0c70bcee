"""API keys across instances, on the real PostgreSQL and Redis: two Daphne processes share one database
(the keys) and one Redis (the limits' counts). A key's requests per minute and open requests are
counted once for both; a key revoked through one is refused by the other within about a second; and
neither the database nor the servers' logs hold a usable key."""
import subprocess
import threading
import time
import uuid

import httpx
import psycopg
import pytest

from tests.conftest import PY, ROOT, make_key, two_instances, wait_for_key

pytestmark = pytest.mark.e2e
CHAT = {"model": "coder", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.fixture(scope="module")
def database(postgres_url):
    """A database of this module's own in the session's cluster: its keys bind no other test."""
    name = f"keys_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def instances(fake_lmstudio, database, redis_url, tmp_path_factory):
    with two_instances(tmp_path_factory, fake_lmstudio.url, database, redis_url) as both:
        yield both


def keys(server, *args: str) -> str:
    return subprocess.run([PY, "manage.py", "keys", *args], cwd=ROOT, env=server.env, check=True,
                          capture_output=True, text=True).stdout


def team_key(server, *options: str) -> tuple[str, dict]:
    name = f"team-{uuid.uuid4().hex[:6]}"  # Redis outlives a test: a fresh name starts from no counts
    key = make_key(server, name, *options)
    return name, {"Authorization": f"Bearer {key}"}


def chat(server, headers: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/api/chat", json=CHAT, headers=headers, timeout=30)


def test_requests_per_minute_are_counted_once_for_every_instance(instances):
    first, second = instances
    name, headers = team_key(first, "--requests-per-minute", "3")
    wait_for_key(first, headers["Authorization"].removeprefix("Bearer "))
    wait_for_key(second, headers["Authorization"].removeprefix("Bearer "))
    assert [chat(server, headers).status_code for server in (first, second, first)] == [200, 200, 200]
    refused = chat(second, headers)
    assert refused.status_code == 429, refused.text
    assert f"'{name}' made 3 requests in the last minute" in refused.json()["error"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    ready = httpx.get(f"{second.url}/ready", headers=headers).json()
    assert ready["key_limits"] == "redis"


def test_a_keys_open_requests_are_counted_once_for_every_instance(instances, fake):
    first, second = instances
    name, headers = team_key(first, "--max-concurrent", "1")
    wait_for_key(first, headers["Authorization"].removeprefix("Bearer "))
    wait_for_key(second, headers["Authorization"].removeprefix("Bearer "))
    fake.script(tokens=30, delay=0.1)  # a stream of about 3 s
    started, statuses = threading.Event(), []

    def hold():
        with httpx.stream("POST", f"{first.url}/api/chat", json={**CHAT, "stream": True}, headers=headers,
                          timeout=30) as response:
            statuses.append(response.status_code)
            started.set()
            for _ in response.iter_lines():
                pass

    holder = threading.Thread(target=hold)
    holder.start()
    assert started.wait(10)
    refused = chat(second, headers)
    assert refused.status_code == 429 and f"'{name}' has 1 requests open" in refused.json()["error"]
    holder.join(20)
    fake.script()
    assert statuses == [200]
    deadline = time.monotonic() + 5  # the ended stream's count leaves Redis just after its last byte
    while (after := chat(second, headers)).status_code == 429:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert after.status_code == 200


def test_a_key_revoked_through_one_instance_is_refused_by_the_other_within_about_a_second(instances):
    first, second = instances
    name, headers = team_key(first)
    wait_for_key(second, headers["Authorization"].removeprefix("Bearer "))
    assert chat(second, headers).status_code == 200
    keys(first, "revoke", name)
    revoked = time.monotonic()
    while (answer := chat(second, headers)).status_code == 200:
        assert time.monotonic() - revoked < 3, "a revoked key was still served after 3 s"
        time.sleep(0.05)
    took = time.monotonic() - revoked
    print(f"\nrevoked through one instance, refused by the other after {took * 1000:.0f} ms")
    assert answer.status_code == 401 and took < 2.5

    key = headers["Authorization"].removeprefix("Bearer ")
    for server in (first, second):
        assert key not in (server.routes.parent / "server.log").read_text()
    with psycopg.connect(first.env["DATABASE_URL"]) as connection:
        stored = connection.execute("SELECT name, prefix, key_hash FROM routing_apikey WHERE name = %s",
                                    (name,)).fetchone()
        logged = connection.execute("SELECT count(*) FROM adminui_requestlog WHERE key_name = %s AND "
                                    "concat(request_body, upstream_body, response_text, error, endpoint) "
                                    "LIKE %s", (name, f"%{key}%")).fetchone()
    assert stored is not None and key not in "".join(stored) and key.startswith(stored[1])
    assert logged == (0,)
