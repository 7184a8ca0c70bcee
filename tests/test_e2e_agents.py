"""End to end with the real coding agents from npm (pinned in tests/agents/package.json, installed by
`npm ci --prefix tests/agents`): Claude Code on /v1/messages, Codex CLI on /v1/responses (custom provider)
and in its Ollama mode (`--oss`: /api/version, /api/tags, /api/pull, then /v1/responses).

They run off the internet: telemetry, update checks, error reporting and plugins off, a throwaway home,
and only the proxy's loopback address to talk to.
"""
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.test_e2e_history import find_log

pytestmark = pytest.mark.e2e

BIN = ROOT / "tests" / "agents" / "node_modules" / ".bin"
OFFLINE_CODEX = ["-c", "analytics.enabled=false", "-c", "check_for_update_on_startup=false", "--disable", "plugins"]
REPLY = "Hello from qwen2.5-7b-instruct! You said:"


def agent(name: str) -> str:
    path = BIN / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: run `npm ci --prefix tests/agents` (.ci/run does)")
        pytest.skip(f"{name} is not installed: npm ci --prefix tests/agents")
    return str(path)


def run(cmd: list[str], home: Path, **env) -> subprocess.CompletedProcess:
    home.mkdir(exist_ok=True)
    clean = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", **env}
    return subprocess.run(cmd, cwd=home, env=clean, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180)


def upstream_models(fake, path="/v1/chat/completions") -> list[str]:
    return [r["json"]["model"] for r in fake.requests(path)]


def last_row(server, endpoint: str) -> dict:
    from tests.conftest import db_query

    [row] = db_query(server, "SELECT request_id FROM adminui_requestlog WHERE endpoint = ? ORDER BY id DESC LIMIT 1",
                     endpoint)
    return find_log(server, row["request_id"])


def claude(server, home: Path, prompt: str, key: str = "dummy",
           key_variable: str = "ANTHROPIC_AUTH_TOKEN") -> subprocess.CompletedProcess:
    """`key_variable`: ANTHROPIC_AUTH_TOKEN sends the key as a bearer token, ANTHROPIC_API_KEY as `x-api-key`."""
    return run([agent("claude"), "-p", prompt, "--model", "coder"], home,
               ANTHROPIC_BASE_URL=server.url, **{key_variable: key}, DISABLE_TELEMETRY="1",
               DISABLE_AUTOUPDATER="1", DISABLE_ERROR_REPORTING="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")


def codex(server, home: Path, prompt: str, key: str | None = None,
          model: str = "coder") -> subprocess.CompletedProcess:
    """With a `key`, the provider reads it from an environment variable (`env_key`) and sends it as a bearer
    token, and Codex does not retry, so that a refused key fails at once instead of after five reconnects."""
    keyed = ', env_key="PROXY_API_KEY", request_max_retries=0, stream_max_retries=0' if key else ""
    provider = f'model_providers.local={{name="local", base_url="{server.url}/v1", wire_api="responses"{keyed}}}'
    env = {"PROXY_API_KEY": key} if key else {}
    return run([agent("codex"), "exec", "--skip-git-repo-check", "-c", "model_provider=local", "-c", provider,
                *OFFLINE_CODEX, "-m", model, prompt], home, CODEX_HOME=str(home), **env)


def assert_a_tool_loop(fake, result):
    """The fake calls the agent's first tool when asked about the weather (with arguments that tool does
    not take): the agent runs it, and sends its result back as the answer to that very call."""
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = [r["json"] for r in fake.requests("/v1/chat/completions")]
    assert first["model"] == second["model"] == "qwen2.5-7b-instruct"
    call, answer = second["messages"][-2:]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"]["name"] == first["tools"][0]["function"]["name"]
    assert answer["role"] == "tool" and answer["tool_call_id"] == call["tool_calls"][0]["id"]
    assert "The tool said:" in result.stdout


def test_claude_code_answers_through_an_alias(proxy_server, fake, tmp_path):
    result = claude(proxy_server, tmp_path / "home", "say hi")
    assert result.returncode == 0, result.stderr[-2000:]
    assert REPLY in result.stdout and "say hi" in result.stdout
    assert upstream_models(fake) == ["qwen2.5-7b-instruct"]
    [sent] = [r["json"] for r in fake.requests("/v1/chat/completions")]
    assert len(sent["tools"]) >= 10 and sent["messages"][0] == {"role": "system", "content": "You are terse."}
    row = last_row(proxy_server, "/v1/messages")
    assert (row["api"], row["alias"], row["status"]) == ("anthropic", "coder", 200)


def test_claude_code_runs_a_tool_loop(proxy_server, fake, tmp_path):
    assert_a_tool_loop(fake, claude(proxy_server, tmp_path / "home", "weather in Paris"))


def test_codex_runs_a_tool_loop(proxy_server, fake, tmp_path):
    assert_a_tool_loop(fake, codex(proxy_server, tmp_path / "home", "weather in Paris"))


def test_codex_answers_through_a_custom_provider(proxy_server, fake, tmp_path):
    result = codex(proxy_server, tmp_path / "home", "say hi")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{REPLY} say hi" in result.stdout
    assert upstream_models(fake) == ["qwen2.5-7b-instruct"]
    row = last_row(proxy_server, "/v1/responses")
    assert (row["api"], row["alias"], row["status"]) == ("responses", "coder", 200)


def test_codex_oss_finds_pulls_and_answers_through_an_alias(proxy_server, fake, tmp_path):
    home = tmp_path / "home"
    result = run([agent("codex"), "exec", "--oss", "--local-provider=ollama", "--skip-git-repo-check",
                  *OFFLINE_CODEX, "-m", "coder", "say hi"], home, CODEX_HOME=str(home),
                 CODEX_OSS_BASE_URL=f"{proxy_server.url}/v1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{REPLY} say hi" in result.stdout
    assert upstream_models(fake) == ["qwen2.5-7b-instruct"]


def test_claude_codes_first_request_lands_on_a_64k_instance(fake_lmstudio, tmp_path):
    """routes.yaml `context_length: 65536` (issue 15's "done when"): Claude Code's first request loads
    an instance with that context before it is served, and /api/ps and the history say so."""
    from tests.conftest import start_proxy, stop

    model = "llama-3.2-1b-instruct"
    fake_lmstudio.reset()
    server = start_proxy(tmp_path / "proxy", fake_lmstudio.url, MODEL_LIST_TTL=0,
                         routes=f"aliases:\n  coder: {{model: {model}, context_length: 65536}}\n")
    try:
        result = claude(server, tmp_path / "home", "say hi")
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"Hello from {model}!" in result.stdout
        loads = [r["json"] for r in fake_lmstudio.requests("/api/v1/models/load")]
        assert [load["context_length"] for load in loads] == [65536]
        paths = [r["path"] for r in fake_lmstudio.requests()]
        assert paths.index("/api/v1/models/load") < paths.index("/v1/chat/completions")
        [running] = [m for m in httpx.get(f"{server.url}/api/ps").json()["models"] if m["model"].startswith(model)]
        assert running["context_length"] == 65536 and running["loaded_by"] == "coder"
        row = last_row(server, "/v1/messages")
        assert row["api"] == "anthropic" and "65536" in row["load"] and row["load_ms"] is not None
    finally:
        stop(server.proc)
        fake_lmstudio.reset()
