"""`ollama pull` end to end: the proxy under Daphne in front of two fake LM Studio processes with the
download API, driven by the official `ollama` client, raw httpx line reading, and a Codex-style reader.

Each test downloads models of its own (set through the fake's /_fake/downloadable), so the proxy's
cached model lists never carry one test's download into another."""
import subprocess
import time

import httpx
import ollama
import orjson
import pytest

from tests.conftest import PY, ROOT, db_query, start_fake_lmstudio, start_proxy, stop
from tests.test_e2e_history import find_log

pytestmark = pytest.mark.e2e

ROUTES = """
backends:
  second: {{url: "{second}"}}
aliases:
  coder: qwen2.5-7b-instruct
  small-qwen:
    model: qwen3-0.6b
    download: {{hf: lmstudio-community/Qwen3-0.6B-GGUF, quantization: Q8_0}}
  granite: {{model: ibm/granite-4-micro, download: ibm/granite-4-micro}}
  renamed: {{model: granite-4-micro-instruct, download: acme/renamed}}
  remote: {{model: acme/remote, backends: [second, default], download: acme/remote}}
"""


@pytest.fixture(scope="module")
def fakes():
    first, second = start_fake_lmstudio(), start_fake_lmstudio()
    yield first, second
    stop(first.proc)
    stop(second.proc)


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    routes = ROUTES.format(second=fakes[1].url)
    proxy = start_proxy(tmp_path_factory.mktemp("pull"), fakes[0].url, routes=routes,
                        PULL_POLL_INTERVAL=0.2, PULL_STALL_TIMEOUT=1)
    yield proxy
    stop(proxy.proc)


@pytest.fixture
def fake(fakes):
    for each in fakes:
        each.reset()
    yield fakes[0]


def downloadable(fake, *specs):
    httpx.post(f"{fake.url}/_fake/downloadable", json=list(specs)).raise_for_status()


def lines_of(response) -> list[tuple[float, dict]]:
    """(arrival time, line) of each NDJSON line, checking the framing: every line ends in a newline."""
    start, seen, buffer = time.monotonic(), [], b""
    for piece in response.iter_raw():
        buffer += piece
        *complete, buffer = buffer.split(b"\n")
        seen += [(time.monotonic() - start, orjson.loads(line)) for line in complete]
    assert buffer == b"", f"a line without its newline: {buffer!r}"
    return seen


def pull_lines(server, body) -> list[tuple[float, dict]]:
    with httpx.stream("POST", f"{server.url}/api/pull", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        return lines_of(response)


def download_requests(fake) -> list[dict]:
    return [r["json"] for r in fake.requests("/api/v1/models/download")]


def test_ollama_pull_shows_moving_progress_then_the_model_chats(server, fake):
    client = ollama.Client(host=server.url, timeout=30)
    assert "google/gemma-3-1b:latest" not in [m.model for m in client.list().models]  # cached without it
    parts = list(client.pull("google/gemma-3-1b", stream=True))
    statuses = [p.status for p in parts]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    bars = [p for p in parts if p.digest]
    assert len({p.digest for p in bars}) == 1 and bars[0].digest.startswith("sha256:")
    assert {p.total for p in bars} == {719_881_216} and bars[0].status == f"pulling {bars[0].digest[7:19]}"
    completed = [p.completed or 0 for p in bars]
    assert completed == sorted(completed) and len(set(completed)) >= 4 and completed[-1] == 719_881_216
    assert download_requests(fake) == [{"model": "google/gemma-3-1b"}]

    assert "google/gemma-3-1b:latest" in [m.model for m in client.list().models]  # at once: lists refreshed
    assert client.show("google/gemma-3-1b").details.family == "gemma3"
    assert "google/gemma-3-1b" in [m["id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]]
    answer = client.chat(model="google/gemma-3-1b", messages=[{"role": "user", "content": "hi"}])
    assert answer.message.content == "Hello from google/gemma-3-1b! You said: hi"
    assert client.pull("google/gemma-3-1b").status == "success"  # served now: no second download
    assert len(download_requests(fake)) == 1


def test_lines_are_written_as_the_download_runs_not_at_the_end(server, fake):
    downloadable(fake, {"model": "acme/timed", "size_bytes": 4000, "seconds": 2.0})
    seen = pull_lines(server, {"model": "acme/timed"})
    arrivals = {line.get("status"): at for at, line in seen if "total" not in line}
    progress = [(at, line.get("completed", 0)) for at, line in seen if "total" in line]
    assert progress[0][0] < 1.0 <= arrivals["success"]  # the first bar long before the job ends
    assert [done for _, done in progress] == sorted(done for _, done in progress)
    assert progress[-1][0] - progress[0][0] >= 1.0 and len(progress) >= 5  # spread over the download
    assert seen[-1][1] == {"status": "success", "backend": "default"}


def test_an_alias_downloads_its_hugging_face_source_and_is_never_sent_as_a_model(server, fake):
    client = ollama.Client(host=server.url, timeout=30)
    done = client.pull("small-qwen:latest", stream=False)
    assert done.status == "success"
    assert download_requests(fake) == [{"model": "https://huggingface.co/lmstudio-community/Qwen3-0.6B-GGUF",
                                        "quantization": "Q8_0"}]
    assert all("small-qwen" not in orjson.dumps(r["json"]).decode() for r in fake.requests() if r["json"])
    answer = client.chat(model="small-qwen", messages=[{"role": "user", "content": "hi"}])
    assert answer.message.content == "Hello from qwen3-0.6b! You said: hi"


def test_ollamas_hugging_face_names_become_a_link_and_a_quantization(server, fake):
    seen = pull_lines(server, {"model": "hf.co/lmstudio-community/Qwen3-0.6B-GGUF:q4_k_m"})
    assert seen[-1][1]["status"] == "success"
    assert download_requests(fake) == [{"model": "https://huggingface.co/lmstudio-community/Qwen3-0.6B-GGUF",
                                        "quantization": "Q4_K_M"}]
    assert "qwen3-0.6b:latest" in [m["name"] for m in httpx.get(f"{server.url}/api/tags").json()["models"]]


def test_a_download_that_fails_half_way_ends_with_an_error_line_never_success(server, fake):
    downloadable(fake, {"model": "acme/broken", "size_bytes": 1000, "seconds": 1.0, "fail_at": 0.5})
    seen = [line for _, line in pull_lines(server, {"model": "acme/broken"})]
    assert seen[-1] == {"error": "LM Studio's download of acme/broken failed"}
    assert any(line.get("completed") for line in seen) and not any(line.get("status") == "success" for line in seen)
    with pytest.raises(ollama.ResponseError) as streamed:
        list(ollama.Client(host=server.url, timeout=30).pull("acme/broken", stream=True))
    assert "failed" in streamed.value.error
    whole = httpx.post(f"{server.url}/api/pull", json={"model": "acme/broken", "stream": False}, timeout=30)
    assert whole.status_code == 502 and whole.json() == {"error": "LM Studio's download of acme/broken failed"}


def test_a_stuck_download_ends_with_an_error_after_the_stall_timeout(server, fake):
    downloadable(fake, {"model": "acme/stuck", "size_bytes": 1000, "seconds": 0.4, "stall_at": 0.5})
    seen = [line for _, line in pull_lines(server, {"model": "acme/stuck"})]
    assert "made no progress for 1 s" in seen[-1]["error"] and "pull again" in seen[-1]["error"]


@pytest.mark.parametrize("name, status, words", [
    ("nobody/nothing", 404, "LM Studio cannot find nobody/nothing in its catalog or on Hugging Face"),
    ("llama3:70b", 404, "cannot pull 'llama3:70b': LM Studio downloads a catalog id such as google/gemma-3-1b"),
    ("renamed", 404, "(the download of alias 'renamed')"),
    ("http://example.com/x", 400, "a model name is not a URL"),
])
def test_a_name_lm_studio_cannot_download_is_an_error_before_the_stream(server, fake, name, status, words):
    with pytest.raises(ollama.ResponseError) as info:
        list(ollama.Client(host=server.url, timeout=30).pull(name, stream=True))
    assert info.value.status_code == status and words in info.value.error


def test_a_download_whose_model_gets_another_id_says_which_id_to_use(server, fake):
    downloadable(fake, {"model": "acme/renamed", "key": "acme/renamed-q4", "size_bytes": 1000, "seconds": 0.3})
    seen = [line for _, line in pull_lines(server, {"model": "renamed"})]
    assert "lists no model 'granite-4-micro-instruct' (the model of alias 'renamed')" in seen[-1]["error"]


def test_a_client_that_hangs_up_stops_the_polling_and_a_second_pull_follows_the_same_job(server, fake):
    downloadable(fake, {"model": "ibm/granite-4-micro", "size_bytes": 1000, "seconds": 2.5})
    status_path = "/api/v1/models/download/status/"
    with httpx.stream("POST", f"{server.url}/api/pull", json={"model": "granite"}, timeout=30) as response:
        lines = response.iter_lines()
        assert orjson.loads(next(lines))["status"] == "pulling manifest"
        assert "total" in orjson.loads(next(lines))
    time.sleep(0.6)  # let the proxy notice the hang-up
    polls = len([r for r in fake.requests() if r["path"].startswith(status_path)])
    time.sleep(0.8)  # four poll intervals
    assert len([r for r in fake.requests() if r["path"].startswith(status_path)]) == polls

    seen = [line for _, line in pull_lines(server, {"model": "granite"})]
    assert seen[-1] == {"status": "success", "backend": "default"} and seen[1].get("completed")
    assert len(download_requests(fake)) == 1  # followed the running job, not a second download


def test_a_served_name_answers_success_at_once_and_codex_reads_a_whole_line(server, fake):
    for name in ("coder", "coder:latest", "qwen2.5-7b-instruct"):
        response = httpx.post(f"{server.url}/api/pull", json={"model": name, "stream": True}, timeout=30)
        assert response.content == b'{"status":"success"}\n'
        assert response.headers["content-type"] == "application/x-ndjson"
    whole = httpx.post(f"{server.url}/api/pull", json={"model": "coder", "stream": False}, timeout=30)
    assert whole.json() == {"status": "success"} and whole.headers["content-type"] == "application/json"
    assert download_requests(fake) == []


def codex_pull(server, model: str) -> list[dict]:
    """What Codex `--oss` does: POST {model, stream: true}, split the bytes at newlines, stop at the
    first success or error line; a stream that ends otherwise is its "ended without success"."""
    events, buffer = [], b""
    with httpx.stream("POST", f"{server.url}/api/pull", json={"model": model, "stream": True},
                      timeout=30) as response:
        assert response.is_success, "Codex: failed to start pull"
        for piece in response.iter_bytes():
            buffer += piece
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                events.append(orjson.loads(line))
                if events[-1].get("status") == "success" or "error" in events[-1]:
                    return events
    raise AssertionError("Pull stream ended unexpectedly without success.")


def test_codex_pulls_an_alias_it_does_not_find_in_tags(server, fake):
    downloadable(fake, {"model": "ibm/granite-4-micro", "size_bytes": 1000, "seconds": 0.5})
    tags = [m["name"] for m in httpx.get(f"{server.url}/api/tags").json()["models"]]
    assert "granite" not in tags  # Codex looks for the exact name: aliases are listed as "granite:latest"
    assert codex_pull(server, "granite")[-1]["status"] == "success"


def test_an_alias_downloads_to_its_first_backend_and_the_answer_names_it(server, fakes, fake):
    first, second = fakes
    downloadable(second, {"model": "acme/remote", "size_bytes": 1000, "seconds": 0.3})
    seen = [line for _, line in pull_lines(server, {"model": "remote"})]
    assert seen[-1] == {"status": "success", "backend": "second"}
    assert download_requests(second) == [{"model": "acme/remote"}] and download_requests(first) == []
    answer = httpx.post(f"{server.url}/api/chat", json={"model": "remote", "stream": False, "messages": [
        {"role": "user", "content": "hi"}]}, timeout=30).json()
    assert answer["message"]["content"] == "Hello from acme/remote! You said: hi"


def test_pulls_are_in_the_request_history(server, fake):
    downloadable(fake, {"model": "acme/logged", "size_bytes": 1000, "seconds": 0.3})
    with httpx.stream("POST", f"{server.url}/api/pull", json={"model": "acme/logged"}, timeout=30) as response:
        request_id = response.headers["X-Request-Id"]
        lines_of(response)
    row = find_log(server, request_id)
    assert (row["endpoint"], row["status"], row["backend"], row["requested_model"]) == (
        "/api/pull", 200, "default", "acme/logged")
    assert "downloaded to backend 'default'" in row["response_text"]
    assert httpx.post(f"{server.url}/api/pull", json={"model": "nobody/logged"}, timeout=30).status_code == 404
    deadline = time.monotonic() + 15  # the log writer is asynchronous; bounded, not a sleep
    while not (rows := db_query(server, "SELECT * FROM adminui_requestlog WHERE requested_model = ?",
                                "nobody/logged")):
        assert time.monotonic() < deadline, "the failed pull was not logged"
        time.sleep(0.05)
    assert (rows[0]["endpoint"], rows[0]["status"], rows[0]["outcome"]) == ("/api/pull", 404, "error")
    assert "cannot pull 'nobody/logged'" in rows[0]["error"]


def test_manage_py_routes_pull_draws_the_same_download_as_a_progress_bar(server, fake):
    downloadable(fake, {"model": "acme/terminal", "size_bytes": 2 ** 30, "seconds": 1.0})
    done = subprocess.run([PY, "manage.py", "routes", "pull", "acme/terminal"], cwd=ROOT, env=server.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "pulling manifest" and lines[-1] == "success (backend 'default')"
    assert "100%" in done.stdout and "1.00G/1.00G" in done.stdout  # tqdm's bar, in bytes
    assert download_requests(fake) == [{"model": "acme/terminal"}]
    served = subprocess.run([PY, "manage.py", "routes", "pull", "coder"], cwd=ROOT, env=server.env,
                            capture_output=True, text=True, timeout=60)
    assert "coder is served already (backend 'default'): nothing to pull" in served.stdout
    failed = subprocess.run([PY, "manage.py", "routes", "pull", "nobody/nothing"], cwd=ROOT, env=server.env,
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "cannot pull 'nobody/nothing'" in failed.stderr
