"""Several LM Studio backends: routes.yaml validation, and the pipeline choosing among them (respx
standing in for two LM Studio servers)."""
import io

import httpx
import pytest
from django.test import AsyncClient

from routing.config.dump import dump_routes
from routing.config.loader import RouteTableError, load_routes
from routing.core.exchange import Exchange
from routing.proxy.state import current
from tests.upstream_stubs import chat_stream

TWO = """
backends:
  mac-studio: {url: "http://a.test", api_key: sekret}
  gpu-box:
    url: http://b.test/
aliases:
  coder: {model: qwen2.5-7b-instruct, backends: [mac-studio, gpu-box]}
  busy: {model: qwen2.5-7b-instruct, backends: [mac-studio, gpu-box], policy: least-busy}
  solo: {model: llama-3.2-1b-instruct, backend: gpu-box}
  local: llama-3.2-1b-instruct
"""


def load(text: str):
    return load_routes(io.StringIO(text), source="routes.yaml")


def test_it_loads_backends_and_each_alias_choice():
    table = load(TWO)
    assert table.backends["mac-studio"].api_key == "sekret"
    assert table.backends["gpu-box"].url == "http://b.test"
    coder, busy, solo, local = (table.resolve(n) for n in ("coder", "busy", "solo", "local"))
    assert coder.backends(table.defaults) == (("mac-studio", "gpu-box"), "fallback")
    assert busy.backends(table.defaults) == (("mac-studio", "gpu-box"), "least-busy")
    assert solo.backends(table.defaults) == (("gpu-box",), "fallback")
    assert local.backends(table.defaults) == (("default",), "fallback")
    assert table.resolve("any-id").backends(table.defaults) == (("default",), "fallback")


def test_defaults_backends_serve_aliases_without_their_own_and_passthrough_names():
    table = load(TWO + "defaults: {backends: [gpu-box, default], policy: least-busy}\n")
    assert table.resolve("local").backends(table.defaults) == (("gpu-box", "default"), "least-busy")
    assert table.resolve("x").backends(table.defaults) == (("gpu-box", "default"), "least-busy")


@pytest.mark.parametrize("text, message", [
    ("backends:\n  a: {api_key: k}\n",
     "routes.yaml:2: backend 'a': 'url' must be an http(s) URL such as http://10.0.0.5:1234, got None"),
    ("backends:\n  a:\n    url: ftp://x\n",
     "routes.yaml:3: backend 'a': 'url' must be an http(s) URL such as http://10.0.0.5:1234, got 'ftp://x'"),
    ("backends:\n  a: {url: 'http://x', key: k}\n", "routes.yaml:2: backend 'a': unknown key 'key'"),
    ("backends:\n  default: {url: 'http://x'}\n",
     "routes.yaml:2: backend 'default': the name is taken by LMSTUDIO_URL's backend"),
    ("backends:\n  a: {url: 'http://x'}\naliases:\n  c:\n    model: m\n    backends: [a, b]\n",
     "routes.yaml:6: alias 'c': unknown backend(s) b (known: default, a)"),
    ("aliases:\n  c: {model: m, backend: nope}\n",
     "routes.yaml:2: alias 'c': unknown backend(s) nope (known: default)"),
    ("aliases:\n  c: {model: m, backend: a, backends: [a]}\n",
     "routes.yaml:2: alias 'c': give either 'backend' or 'backends', not both"),
    ("aliases:\n  c: {model: m, backends: [default], policy: random}\n",
     "routes.yaml:2: alias 'c': 'policy' must be one of fallback, least-busy, got 'random'"),
    ("aliases:\n  c: {model: m, backends: [default, default]}\n",
     "routes.yaml:2: alias 'c': 'backends' names a backend twice"),
    ("defaults:\n  backends: [x]\n", "routes.yaml:2: defaults: unknown backend(s) x (known: default)"),
])
def test_bad_backend_configuration_names_the_line(text, message):
    with pytest.raises(RouteTableError) as err:
        load(text)
    assert str(err.value).startswith(message)


def test_an_exported_table_with_backends_loads_back_equal():
    table = load(TWO)
    assert load(dump_routes(table)) == table


# --- the pipeline over two backends -------------------------------------------------------------


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def two_lmstudios(tmp_path, settings, db, monkeypatch):
    """routes.yaml with two backends (a.test, b.test) faked by respx; the pool's clock is ours."""
    import respx

    from tests.conftest import use_state

    path = tmp_path / "routes.yaml"
    path.write_text(TWO)
    settings.ROUTES_FILE, settings.BACKEND_COOL_OFF = path, 10.0
    settings.LMSTUDIO_URL = "http://default.test"
    clock = Clock()
    use_state(settings).pool.clock = clock
    with respx.mock(assert_all_called=False) as router:
        router.clock = clock
        yield router


CHAT = {"model": "coder", "messages": [{"role": "user", "content": "hi"}], "stream": False}


async def chat(body=CHAT):
    return await AsyncClient().post("/api/chat", body, content_type="application/json")


@pytest.mark.anyio
async def test_fallback_goes_to_the_next_backend_and_passes_over_the_failed_one_until_its_cool_off(
        two_lmstudios):
    a = two_lmstudios.post("http://a.test/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    b = two_lmstudios.post("http://b.test/v1/chat/completions").mock(side_effect=lambda r: chat_stream())
    assert (await chat()).status_code == 200
    assert a.call_count == 1 and b.call_count == 1
    assert a.calls[0].request.headers["authorization"] == "Bearer sekret"
    assert current().pool.status()["mac-studio"]["up"] is False
    assert (await chat()).status_code == 200
    assert a.call_count == 1 and b.call_count == 2  # cooling off: not tried first
    two_lmstudios.clock.now += 10.5
    a.mock(side_effect=lambda r: chat_stream())
    assert (await chat()).status_code == 200
    assert a.call_count == 2 and b.call_count == 2  # probed again first, and it answered
    assert current().pool.status()["mac-studio"] == {"url": "http://a.test", "up": True, "open_requests": 0,
                                                 "last_error": ""}


@pytest.mark.anyio
async def test_a_5xx_before_streaming_falls_back_but_a_client_error_does_not(two_lmstudios):
    a = two_lmstudios.post("http://a.test/v1/chat/completions").mock(
        return_value=httpx.Response(500, json={"error": "GPU on fire"}))
    b = two_lmstudios.post("http://b.test/v1/chat/completions").mock(side_effect=lambda r: chat_stream())
    assert (await chat({**CHAT, "stream": True})).status_code == 200
    assert a.call_count == b.call_count == 1
    two_lmstudios.clock.now += 11
    a.mock(return_value=httpx.Response(404, json={"error": {"message": "model not found",
                                                            "code": "model_not_found"}}))
    assert (await chat()).status_code == 404
    assert a.call_count == 2 and b.call_count == 1


@pytest.mark.anyio
async def test_when_every_backend_fails_the_last_failure_is_the_answer(two_lmstudios):
    for host in ("a", "b"):
        two_lmstudios.post(f"http://{host}.test/v1/chat/completions").mock(
            side_effect=httpx.ConnectError("refused"))
    response = await chat()
    assert response.status_code == 502 and "http://b.test" in response.json()["error"]


@pytest.mark.anyio
async def test_least_busy_counts_a_request_open_until_its_exchange_finishes(two_lmstudios):
    from routing.proxy.state import current

    for host in ("a", "b"):
        two_lmstudios.post(f"http://{host}.test/v1/chat/completions").mock(side_effect=lambda r: chat_stream())
    table = await current().registry.table()
    route = table.resolve("busy")
    first, second = Exchange("ollama", "/api/chat"), Exchange("ollama", "/api/chat")
    state = current()
    _, response = await state.pool.open(state.admission, table, route, first, "POST", "/v1/chat/completions",
                                        {}, model="busy")
    await response.aclose()
    assert first.backend == "mac-studio" and state.pool.states["mac-studio"].open_requests == 1
    _, response = await state.pool.open(state.admission, table, route, second, "POST", "/v1/chat/completions",
                                        {}, model="busy")
    await response.aclose()
    assert second.backend == "gpu-box"
    state.observers.finished(first)
    state.observers.finished(second)
    assert {s.name: s.open_requests for s in current().pool.states.values()} == {
        "default": 0, "mac-studio": 0, "gpu-box": 0}


@pytest.mark.anyio
async def test_the_exchange_records_the_backend_that_answered(two_lmstudios):
    two_lmstudios.post("http://b.test/v1/chat/completions").mock(side_effect=lambda r: chat_stream())
    seen = []
    current().observers.add(seen.append)
    try:
        assert (await chat({**CHAT, "model": "solo"})).status_code == 200
    finally:
        current().observers.remove(seen.append)
    assert [e.backend for e in seen] == ["gpu-box"]


@pytest.mark.anyio
async def test_tags_merge_every_backend_and_ps_says_which_holds_what(two_lmstudios):
    def models(*ids, loaded=()):
        return httpx.Response(200, json={"data": [{"id": i, "type": "llm", "state": "loaded" if i in loaded
                                                   else "not-loaded"} for i in ids]})

    for host, answer in (("default", models("m-local")), ("a", models("m-a", loaded=("m-a",))),
                         ("b", models("m-a", "m-b", loaded=("m-b",)))):
        two_lmstudios.get(f"http://{host}.test/api/v0/models").mock(return_value=answer)
        two_lmstudios.get(f"http://{host}.test/api/v1/models").mock(return_value=httpx.Response(
            200, json={"error": "Unexpected endpoint or method. (GET /api/v1/models)"}))
    tags = (await AsyncClient().get("/api/tags")).json()["models"]
    names = [m["name"] for m in tags]
    assert {"m-local:latest", "m-a:latest", "m-b:latest"} <= set(names) and names.count("m-a:latest") == 1
    ps = (await AsyncClient().get("/api/ps")).json()["models"]
    assert {(m["name"], m["backend"]) for m in ps if m["name"].startswith("m-")} == {
        ("m-a:latest", "mac-studio"), ("m-b:latest", "gpu-box")}


# --- admin aliases ------------------------------------------------------------------------------


def test_an_admin_alias_names_backends_validated_like_the_file(two_lmstudios):
    from django.core.exceptions import ValidationError

    from routing.models import Alias as StoredAlias

    bad = StoredAlias(name="team", model="m", backends="gpu-box, nowhere")
    with pytest.raises(ValidationError) as err:
        bad.full_clean()
    assert err.value.message_dict["backends"] == [
        "alias 'team': unknown backend(s) nowhere (known: default, mac-studio, gpu-box)"]
    good = StoredAlias(name="team", model="m", backends="gpu-box, default", policy="least-busy")
    good.full_clean()
    alias = good.to_route_alias()
    assert (alias.backends, alias.policy) == (("gpu-box", "default"), "least-busy")


def test_an_admin_alias_brings_its_backends_into_the_effective_table(two_lmstudios):
    from routing.models import Alias as StoredAlias
    from routing.proxy.state import current

    StoredAlias.objects.create(name="coder", model="m", backends="gpu-box", policy="least-busy")
    table = current().registry.current_table()
    assert table.resolve("coder").backends(table.defaults) == (("gpu-box",), "least-busy")
    assert table.backends is current().registry.file_table().backends  # the admin adds none: the same


def test_an_admin_backend_is_validated_and_merged_over_the_file_ones(two_lmstudios):
    from django.core.exceptions import ValidationError

    from routing.models import Alias as StoredAlias
    from routing.models import Backend as StoredBackend
    from routing.proxy.state import current

    for bad, field, message in [
            ({"name": "x", "url": "ftp://x"}, "url", "backend 'x': 'url' must be an http(s) URL"),
            ({"name": "default", "url": "http://x"}, "name", "backend 'default': the name is taken")]:
        with pytest.raises(ValidationError) as err:
            StoredBackend(**bad).full_clean()
        assert err.value.message_dict[field][0].startswith(message)
    StoredBackend(name="spare", url="http://c.test/").full_clean()
    StoredBackend.objects.create(name="spare", url="http://c.test")
    StoredBackend.objects.create(name="gpu-box", url="http://b2.test", api_key="k")  # overrides the file's
    StoredAlias(name="team", model="m", backends="spare, gpu-box").full_clean()  # the admin's are known
    StoredAlias.objects.create(name="team", model="m", backends="spare, gpu-box")
    table = current().registry.current_table()
    assert {n: b.url for n, b in table.backends.items()} == {
        "mac-studio": "http://a.test", "gpu-box": "http://b2.test", "spare": "http://c.test"}
    assert table.resolve("team").backends(table.defaults) == (("spare", "gpu-box"), "fallback")


@pytest.mark.anyio
async def test_a_route_naming_no_configured_backend_is_a_502_saying_so(two_lmstudios):
    from routing.config.table import Route, RouteAlias
    from routing.core.errors import UpstreamUnavailable
    from routing.proxy.state import current

    table = await current().registry.table()
    route = Route("team", "m", RouteAlias("team", "m", backends=("gone",)))
    with pytest.raises(UpstreamUnavailable, match="no configured backend among gone"):
        await current().pool.open(current().admission, table, route, Exchange("ollama", "/api/chat"), "POST",
                                  "/v1/chat/completions", {}, model="team")


@pytest.mark.anyio
async def test_an_unreachable_backend_is_not_asked_for_every_model_list_while_it_cools_off(two_lmstudios):
    models = httpx.Response(200, json={"data": [{"id": "m-b", "type": "llm"}]})
    missing_v1 = httpx.Response(200, json={"error": "Unexpected endpoint or method. (GET /api/v1/models)"})
    dead = {host: two_lmstudios.get(f"http://{host}.test/api/v0/models").mock(
        side_effect=httpx.ConnectError("refused")) for host in ("default", "a")}
    two_lmstudios.get("http://b.test/api/v0/models").mock(return_value=models)
    two_lmstudios.get("http://b.test/api/v1/models").mock(return_value=missing_v1)
    for _ in range(2):
        tags = (await AsyncClient().get("/api/tags")).json()["models"]
        assert "m-b:latest" in [m["name"] for m in tags]
    assert [route.call_count for route in dead.values()] == [1, 1]
    assert current().pool.status()["mac-studio"]["up"] is False
