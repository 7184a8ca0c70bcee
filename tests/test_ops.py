"""Health, readiness, metrics, error pages and LM Studio's error answers, in-process (respx upstream)."""
import httpx
import orjson
import pytest
from django.test import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from routing.core import errors
from routing.lmstudio.client import check_response
from routing.proxy.state import current
from tests.upstream_stubs import healthy_lmstudio

pytestmark = pytest.mark.anyio

CHAT = {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}


def samples(text: str) -> dict:
    """(name, sorted label items) -> value, for every sample of a Prometheus text exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_health_answers_without_asking_lmstudio(upstream_mock):
    response = await AsyncClient().get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert not upstream_mock.calls


async def test_ready_asks_lmstudio_for_its_model_list(upstream_mock, routes_file):
    healthy_lmstudio(upstream_mock)
    response = await AsyncClient().get("/ready")
    assert response.status_code == 200 and response.json() == {"status": "ready", "backends": {
        "default": {"url": "http://lmstudio.test", "up": True, "open_requests": 0, "last_error": ""}},
        "key_limits": "this process"}
    [call] = upstream_mock.calls
    assert call.request.url.path == "/v1/models"


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                     httpx.Response(500, json={"error": "boom"})])
async def test_ready_is_503_when_lmstudio_does_not_answer(upstream_mock, routes_file, failure):
    upstream_mock.get("/v1/models").mock(side_effect=[failure])
    response = await AsyncClient().get("/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and "LM Studio" in response.json()["error"]


async def test_metrics_count_requests_tokens_latency_and_upstream_errors(routes_file, upstream_mock):
    healthy_lmstudio(upstream_mock)
    client = AsyncClient()
    whole = {**CHAT, "stream": False}
    before = (await client.get("/metrics")).content.decode()
    assert (await client.post("/api/chat", whole, content_type="application/json")).status_code == 200
    upstream_mock.post("/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    assert (await client.post("/api/chat", whole, content_type="application/json")).status_code == 502
    response = await client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain; version=")
    after = response.content.decode()

    def grew(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("proxy_requests_total", endpoint="/api/chat", alias="coder", status="200", outcome="ok") == 1
    assert grew("proxy_requests_total", endpoint="/api/chat", alias="coder", status="502",
                outcome="error") == 1
    assert grew("proxy_tokens_total", endpoint="/api/chat", alias="coder", kind="completion") == 2
    assert grew("proxy_upstream_errors_total", endpoint="/api/chat", status="502") == 1
    assert grew("proxy_request_duration_seconds_count", endpoint="/api/chat") == 2
    assert grew("proxy_time_to_first_token_seconds_count", endpoint="/api/chat") == 1
    assert sample(after, "proxy_open_streams") == 0


async def test_the_open_streams_gauge_counts_a_stream_while_it_is_relayed(routes_file, upstream_mock):
    OPEN_STREAMS = current().metrics.open_streams
    healthy_lmstudio(upstream_mock)
    response = await AsyncClient().post("/api/chat", CHAT, content_type="application/json")
    stream = aiter(response.streaming_content)
    await anext(stream)
    assert OPEN_STREAMS._value.get() == 1
    async for _ in stream:
        pass
    assert OPEN_STREAMS._value.get() == 0


@pytest.mark.parametrize("path", ["/api/nope", "/v1/nope", "/api/chat/extra"])
async def test_unknown_api_paths_are_json_404s(db, path):  # db: a catch-all may consult the route table
    response = await AsyncClient().post(path, {}, content_type="application/json")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["error"]


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_a_bug_in_the_proxy_is_a_json_500_without_a_traceback(routes_file, upstream_mock,
                                                                   monkeypatch, path):
    async def broken():
        raise RuntimeError("secret internals")

    monkeypatch.setattr(current().registry, "table", broken)
    response = await AsyncClient(raise_request_exception=False).post(path, CHAT,
                                                                     content_type="application/json")
    assert response.status_code == 500 and b"secret internals" not in response.content
    assert b"Traceback" not in response.content and "internal error" in str(response.json()["error"])


@pytest.mark.parametrize("path, dialect", [("/api/chat", "ollama"), ("/api/show", "ollama"),
                                           ("/v1/chat/completions", "openai"), ("/api/tags", "ollama")])
async def test_a_body_over_the_limit_is_a_413_in_the_dialect(settings, routes_file, upstream_mock,
                                                             path, dialect):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
    response = await AsyncClient().post(path, body, content_type="application/json")
    assert response.status_code == 413
    error = response.json()["error"]
    assert "too large" in (error["message"] if dialect == "openai" else error)
    assert not upstream_mock.calls


def lmstudio_answer(status, body, path="/v1/chat/completions"):
    return httpx.Response(status, content=orjson.dumps(body),
                          request=httpx.Request("POST", f"http://lmstudio.test{path}"))


@pytest.mark.parametrize("status, body, kind, http_status, words", [
    (400, {"error": {"message": "No models loaded. Please load a model in the developer page or use "
                                "the 'lms load' command.", "type": "invalid_request_error"}},
     errors.ModelNotLoaded, 409, "lms load qwen"),
    (400, {"error": {"message": 'Model "qwen" is not loaded. Please load it with lms load or enable JIT.'}},
     errors.ModelNotLoaded, 409, "Just-In-Time"),
    (200, {"error": "Unexpected endpoint or method. (POST /v1/nope)"}, errors.UpstreamError, {501, 502},
     "does not serve"),
    (500, {"error": {"message": "CUDA out of memory"}}, errors.UpstreamError, 500, "CUDA out of memory"),
    (503, "not json at all", errors.UpstreamError, 503, "LM Studio"),
    (400, {"error": {"message": "bad temperature"}}, errors.UpstreamError, 400, "bad temperature"),
    (404, {"error": {"message": "gone", "code": "model_not_found"}}, errors.ModelNotFound, 404, "qwen"),
])
def test_lmstudio_error_answers_become_the_right_errors(status, body, kind, http_status, words):
    with pytest.raises(kind) as info:
        check_response(lmstudio_answer(status, body), "qwen")
    assert info.value.status in (http_status if isinstance(http_status, set) else {http_status})
    assert words in info.value.message


async def test_a_client_leaving_mid_stream_closes_upstream_and_is_recorded_once():
    from routing.core.exchange import DISCONNECTED, Exchange
    from routing.dialects.ollama import DIALECT as OLLAMA
    from routing.dialects.ollama import Translator as OllamaTranslator
    from routing.lmstudio.events import EventStream
    from routing.proxy.relay import relay

    upstream_closed = []

    async def batches():
        try:
            for i in range(100):
                yield [{"choices": [{"delta": {"content": f"tok{i}"}}]}]
        finally:
            upstream_closed.append(True)

    seen = []
    state = current()
    OPEN_STREAMS = state.metrics.open_streams
    state.observers.add(seen.append)
    try:
        exchange = Exchange(api="ollama", endpoint="/api/chat")
        stream = relay(EventStream(batches()), OllamaTranslator("coder", "chat"), OLLAMA, exchange, state)
        assert b"tok0" in await anext(stream)
        assert OPEN_STREAMS._value.get() == 1
        await stream.aclose()  # what the server does when the client hangs up
    finally:
        current().observers.remove(seen.append)
    assert upstream_closed == [True] and OPEN_STREAMS._value.get() == 0
    assert seen == [exchange] and exchange.outcome == DISCONNECTED and exchange.status == 499


@pytest.mark.parametrize("method, path, allowed", [("GET", "/api/chat", "POST"),
                                                   ("DELETE", "/v1/models", "GET"),
                                                   ("POST", "/health", "GET, HEAD")])
async def test_a_wrong_method_is_a_json_405_naming_the_right_ones(method, path, allowed):
    response = await AsyncClient().generic(method, path)
    assert response.status_code == 405 and response["Allow"] == allowed
    error = response.json()["error"]
    assert f"{method} is not allowed on {path}" in (error["message"] if path.startswith("/v1/") else error)
