"""The API key, public paths, CORS and what never leaks: every API endpoint, in-process."""
import httpx
import orjson
import pytest
from django.test import AsyncClient

from routing.proxy.state import current
from tests.api_endpoints import API_ENDPOINTS, PUBLIC_PATHS
from tests.upstream_stubs import healthy_lmstudio

pytestmark = pytest.mark.anyio

KEY = "s3cret-key-0123456789"
# Every path of LM Studio's the proxy may call: fixed, whatever the request says.
LMSTUDIO_PATHS = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/api/v0/models",
                  "/api/v1/models", "/api/v1/models/load", "/api/v1/models/unload"}


@pytest.fixture
def locked(settings, routes_file, upstream_mock):
    settings.API_KEY = KEY
    healthy_lmstudio(upstream_mock)
    return upstream_mock


async def call(method, path, body=None, **headers):
    client = AsyncClient()
    if method == "GET":
        return await client.get(path, headers=headers)
    return await client.generic(method, path, orjson.dumps(body), content_type="application/json",
                                headers=headers)


@pytest.mark.parametrize("method, path, body", API_ENDPOINTS)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {KEY}", "Bearer", f"Bearer {KEY}x"])
async def test_every_api_endpoint_refuses_a_missing_or_wrong_key(locked, method, path, body, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = await call(method, path, body, **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    error = response.json()["error"]
    if path == "/v1/messages":
        assert error["type"] == "authentication_error" and "API key" in error["message"]
    elif path.startswith("/v1/"):
        assert error["code"] == "invalid_api_key" and "API key" in error["message"]
    else:
        assert "API key" in error
    assert not locked.calls, "nothing reached LM Studio"


@pytest.mark.parametrize("method, path, body", API_ENDPOINTS)
async def test_every_api_endpoint_answers_with_the_right_key(locked, method, path, body):
    response = await call(method, path, body, Authorization=f"Bearer {KEY}")
    assert response.status_code == 200, response.content[:300]


@pytest.mark.parametrize("method, path, body", API_ENDPOINTS)
async def test_every_api_endpoint_takes_the_key_as_x_api_key_too(locked, method, path, body):
    assert (await call(method, path, body, **{"X-Api-Key": KEY})).status_code == 200
    assert (await call(method, path, body, **{"X-Api-Key": KEY + "x"})).status_code == 401


@pytest.mark.parametrize("path", PUBLIC_PATHS)
async def test_public_paths_need_no_key(locked, path):
    assert (await call("GET", path)).status_code == 200


async def test_without_an_api_key_setting_everything_is_open(settings, routes_file, upstream_mock):
    settings.API_KEY = ""
    healthy_lmstudio(upstream_mock)
    for method, path, body in API_ENDPOINTS:
        assert (await call(method, path, body)).status_code == 200, path


async def test_the_admin_keeps_django_login_not_the_api_key(locked):
    response = await AsyncClient().get("/admin/", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


async def test_the_key_never_reaches_the_exchange_record_nor_lmstudio(locked):
    seen = []
    current().observers.add(seen.append)
    try:
        response = await call("POST", "/api/chat", {"model": "coder", "stream": False,
                                                    "messages": [{"role": "user", "content": "hi"}]},
                              Authorization=f"Bearer {KEY}")
    finally:
        current().observers.remove(seen.append)
    assert response.status_code == 200
    [exchange] = seen
    assert KEY not in repr(exchange)
    [sent] = locked.calls
    assert KEY not in str(sent.request.headers) and KEY.encode() not in sent.request.content


async def test_cors_allows_only_the_configured_origins(settings, locked):
    settings.CORS_ALLOWED_ORIGINS = ["http://app.example"]
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    ok = await AsyncClient().options("/api/chat", headers=preflight)
    assert ok["Access-Control-Allow-Origin"] == "http://app.example"
    assert "authorization" in ok["Access-Control-Allow-Headers"]
    other = await AsyncClient().options("/api/chat", headers={**preflight, "Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in other


async def test_no_origin_is_allowed_by_default(locked):
    response = await AsyncClient().get("/api/version", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.parametrize("model", ["http://evil.example/", "//evil.example/x", "../../x", "../admin",
                                   "@evil.example", "qwen2.5-7b-instruct/../../../etc/passwd", "%2e%2e/x"])
async def test_no_request_field_can_aim_the_proxy_elsewhere(settings, routes_file, upstream_mock, model):
    healthy_lmstudio(upstream_mock)
    for method, path, body in API_ENDPOINTS:
        if body is not None:
            await call(method, path, {**body, "model": model})
    assert upstream_mock.calls
    for sent in upstream_mock.calls:
        url = sent.request.url
        assert (url.scheme, url.host, url.port) == ("http", "lmstudio.test", None)
        assert url.path in LMSTUDIO_PATHS, url


def test_the_upstream_client_only_takes_paths():
    from routing.lmstudio.client import Upstream

    upstream = Upstream("http://127.0.0.1:9")
    request = upstream.build_request("POST", "/v1/chat/completions")
    assert str(request.url) == "http://127.0.0.1:9/v1/chat/completions"
    for elsewhere in ("http://evil.test/x", "evil.test/x", "@evil.test/x"):
        with pytest.raises(ValueError):
            upstream.build_request("GET", elsewhere)
    assert upstream.build_request("GET", "//evil.test/x").url.host == "127.0.0.1"


@pytest.mark.e2e
def test_the_official_clients_work_with_the_key_under_daphne(fake, tmp_path):
    import ollama
    import openai

    from tests.conftest import start_proxy, stop

    server = start_proxy(tmp_path, fake.url, API_KEY=KEY)
    try:
        good = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
        reply = good.chat.completions.create(model="coder", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content.endswith("You said: hi")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()
        client = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {KEY}"})
        assert client.chat(model="coder", messages=[{"role": "user", "content": "hi"}]).message.content
        with pytest.raises(ollama.ResponseError) as info:
            ollama.Client(host=server.url).list()
        assert info.value.status_code == 401
        assert httpx.get(f"{server.url}/api/version").status_code == 200
        sent = fake.requests("/v1/chat/completions")
        assert len(sent) == 2 and all(KEY not in str(r["headers"]) for r in sent)
    finally:
        stop(server.proc)



# --- refusals counted and said (routing.proxy.refusals) ---------------------------------------------


def test_missing_keys_are_said_once_then_once_a_minute_with_the_count_and_every_refusal_is_counted(caplog):
    from prometheus_client import CollectorRegistry, Counter

    from routing.core.errors import BadRequest, Unauthorized
    from routing.proxy.refusals import Refusals

    counter = Counter("refused", "", ["status"], registry=CollectorRegistry())
    now = [0.0]
    refusals = Refusals(counter, clock=lambda: now[0])
    caplog.set_level("WARNING", logger="routing.proxy.refusals")
    no_key = Unauthorized("missing or invalid API key")
    refusals.note(no_key, "POST", "/v1/messages", "10.0.0.9")
    for second in range(1, 40):  # a client retrying a wrong key: no line per attempt
        now[0] = second
        refusals.note(no_key, "POST", "/v1/messages", "10.0.0.9")
    refusals.note(BadRequest("host not allowed"), "GET", "/api/tags", "10.0.0.8")
    now[0] = 61
    refusals.note(no_key, "GET", "/api/tags", "10.0.0.7")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refused 1 request(s) without a valid API key; the latest: POST /v1/messages from 10.0.0.9",
                     "refused 40 request(s) without a valid API key in the last 61 s; the latest: GET /api/tags "
                     "from 10.0.0.7"]
    assert counter.labels("401")._value.get() == 41 and counter.labels("400")._value.get() == 1
