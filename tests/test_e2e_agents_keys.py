"""The real coding agents with a person's API key (the issue "a key per person"): Claude Code and Codex
answer with a key scoped to the alias they use and the history names the key; a key scoped to another
model is refused with a 403 the agent shows, naming the key and the model, before LM Studio sees anything;
a revoked key fails Codex at once with the 401; and no key an agent sent, even inside its prompt, is in
the database (with its write-ahead log), the history's bodies or the server's log.

In this setup Claude Code (`-p … --model coder`, non-essential traffic off) names no model but `coder`:
no small/fast model for background tasks, so a key scoped to `coder` is all it needs.
"""
import subprocess
import time

import httpx
import pytest

from tests.conftest import PY, ROOT, db_query, make_key, start_proxy, stop
from tests.test_e2e_agents import REPLY, assert_a_tool_loop, claude, codex, upstream_models
from tests.test_e2e_keys import assert_never_written

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(fake_lmstudio, tmp_path_factory):
    """A proxy that requires keys (the operator's `API_KEY`; people's keys are made by each test)."""
    server = start_proxy(tmp_path_factory.mktemp("keyed"), fake_lmstudio.url, API_KEY="operator-secret-0123456789")
    yield server
    stop(server.proc)


def wait_for_status(server, key: str, status: int, timeout: float = 3.0):
    """Until the running server answers `status` to this key (it reads the keys about once a second)."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {key}"}
    while (got := httpx.get(f"{server.url}/v1/models", headers=headers).status_code) != status:
        assert time.monotonic() < deadline, f"the key still got {got}, not {status}, after {timeout} s"
        time.sleep(0.05)


def person_key(server, name: str, *options: str) -> str:
    """A new key, once the running server serves it."""
    key = make_key(server, name, *options)
    wait_for_status(server, key, 200)
    return key


def rows_of(server, key_name: str, count: int, timeout: float = 10.0) -> list[dict]:
    """The request log's rows of one key, once the background writer has written `count` of them."""
    deadline = time.monotonic() + timeout
    while len(rows := db_query(server, "SELECT * FROM adminui_requestlog WHERE key_name = ? ORDER BY id",
                               key_name)) < count:
        assert time.monotonic() < deadline, f"{len(rows)} rows of {key_name!r}, not {count}, after {timeout} s"
        time.sleep(0.05)
    return rows


@pytest.mark.parametrize("variable", ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"])
def test_claude_code_runs_a_tool_loop_with_a_key_scoped_to_coder(server, fake, tmp_path, variable):
    """ANTHROPIC_AUTH_TOKEN reaches the proxy as `Authorization: Bearer`, ANTHROPIC_API_KEY as `x-api-key`."""
    name = f"claude-{variable.lower()}"
    key = person_key(server, name, "--aliases", "coder")
    assert_a_tool_loop(fake, claude(server, tmp_path / "home", "weather in Paris", key=key, key_variable=variable))
    rows = rows_of(server, name, 2)
    assert [(r["endpoint"], r["requested_model"], r["alias"], r["status"]) for r in rows] == [
        ("/v1/messages", "coder", "coder", 200)] * 2
    assert_never_written(server, key)


def test_claude_code_is_refused_coder_with_a_key_scoped_to_another_alias(server, fake, tmp_path):
    key = person_key(server, "tiny-only", "--aliases", "tiny")
    result = claude(server, tmp_path / "home", "say hi", key=key)
    assert result.returncode != 0
    assert "API Error: 403 the API key 'tiny-only' may not use the model 'coder'" in result.stdout, (
        result.stdout[-2000:], result.stderr[-2000:])
    assert fake.requests("/v1/chat/completions") == []
    [row] = rows_of(server, "tiny-only", 1)
    assert (row["endpoint"], row["requested_model"], row["status"]) == ("/v1/messages", "coder", 403)
    assert "'coder'" in row["error"]
    assert_never_written(server, key)


def test_codex_answers_with_a_scoped_key_from_its_env_key_and_is_refused_other_models(server, fake, tmp_path):
    key = person_key(server, "cody", "--aliases", "coder")
    result = codex(server, tmp_path / "home", "say hi", key=key)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{REPLY} say hi" in result.stdout
    [row] = rows_of(server, "cody", 1)
    assert (row["endpoint"], row["alias"], row["status"]) == ("/v1/responses", "coder", 200)

    refused = codex(server, tmp_path / "home", "say hi", key=key, model="tiny")
    assert refused.returncode != 0
    assert "unexpected status 403 Forbidden: the API key 'cody' may not use the model 'tiny'" in refused.stderr, (
        refused.stderr[-2000:])
    assert upstream_models(fake) == ["qwen2.5-7b-instruct"]  # the first run's only
    assert [r["status"] for r in rows_of(server, "cody", 2)] == [200, 403]
    assert_never_written(server, key)


def test_codex_with_a_revoked_key_fails_at_once_with_the_401(server, fake, tmp_path):
    key = person_key(server, "leaver")
    assert codex(server, tmp_path / "home", "say hi", key=key).returncode == 0
    subprocess.run([PY, "manage.py", "keys", "revoke", "leaver"], cwd=ROOT, env=server.env, check=True,
                   capture_output=True)
    wait_for_status(server, key, 401)

    started = time.monotonic()
    result = codex(server, tmp_path / "home", "say hi", key=key)
    assert result.returncode != 0
    assert "unexpected status 401 Unauthorized: missing or invalid API key" in result.stderr, result.stderr[-2000:]
    assert "Reconnecting" not in result.stderr  # the provider's no-retry options were taken
    assert time.monotonic() - started < 15
    assert len(fake.requests("/v1/chat/completions")) == 1  # the run before the revocation
    rows_of(server, "leaver", 1)
    assert_never_written(server, key)


def test_the_keys_the_agents_sent_are_never_written_even_when_echoed(server, fake, tmp_path):
    """Each agent puts its own key in its prompt: the fake LM Studio echoes it back, so it is in the
    request, the upstream body and the answer, and the history must redact it from all three."""
    keys = {"echo-claude": person_key(server, "echo-claude", "--aliases", "coder"),
            "echo-codex": person_key(server, "echo-codex", "--aliases", "coder")}
    said = claude(server, tmp_path / "claude", f"my key is {keys['echo-claude']}", key=keys["echo-claude"])
    assert said.returncode == 0 and keys["echo-claude"] in said.stdout, said.stderr[-2000:]
    said = codex(server, tmp_path / "codex", f"my key is {keys['echo-codex']}", key=keys["echo-codex"])
    assert said.returncode == 0 and keys["echo-codex"] in said.stdout, said.stderr[-2000:]

    for name, key in keys.items():
        [row] = rows_of(server, name, 1)
        bodies = [row[column] for column in ("request_body", "upstream_body", "response_text")]
        assert all("my key is [redacted]" in body for body in bodies), bodies
        assert_never_written(server, key)
