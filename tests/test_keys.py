"""API keys per person, in-process: hashing, scope matching, the key ring, the store's refresh, the head
gate with keys, keys in the path, and the history's key column."""
import hashlib
import time
from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import call_command
from django.test import AsyncClient

from routing.core.errors import Unauthorized
from routing.core.exchange import Exchange
from routing.core.paths import mask_path_key, split_path_key
from routing.models import ApiKey
from routing.proxy.keystore import KeyStore
from routing.proxy.state import current
from routing.security.access import head_refusal, key_grant
from routing.security.keys import (
    CLOSED_RING, EMPTY_RING, OPERATOR, KeyGrant, KeyRing, key_hash, new_key, parse_scope, visible_prefix,
)
from tests.upstream_stubs import healthy_lmstudio


def ring_of(**grants: KeyGrant) -> tuple[KeyRing, dict[str, str]]:
    keys = {name: new_key() for name in grants}
    return KeyRing({key_hash(keys[name]): KeyGrant(**{**vars(g), "hash": key_hash(keys[name])})
                    for name, g in grants.items()}), keys


def test_a_new_key_is_long_random_and_recognisable():
    key, other = new_key(), new_key()
    assert key.startswith("lmp_") and len(key) == 4 + 43 and key != other
    assert visible_prefix(key) == key[:12]


def test_only_the_sha256_of_a_key_is_kept():
    key = new_key()
    assert key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    row = ApiKey(name="ann")
    row.set_key(key)
    assert row.key_hash == key_hash(key) and row.prefix == key[:12]
    assert key not in str(vars(row))


@pytest.mark.parametrize("scope, model, allowed", [
    ("", "anything", True),
    ("coder", "coder", True),
    ("coder", "coder:latest", True),
    ("coder:latest", "coder", True),
    ("coder", "coder2", False),
    ("coder", "tiny", False),
    ("coder, chat*", "chat-big", True),
    ("coder, chat*", "chat", True),
    ("coder, chat*", "mychat", False),
    ("chat*", "qwen2.5-7b-instruct", False),    # a pass-through name outside the scope
    ("qwen*", "qwen2.5-7b-instruct", True),
    ("Coder", "coder", False),                  # names are case-sensitive, as aliases are
])
def test_a_scope_allows_its_names_and_patterns_only(scope, model, allowed):
    assert KeyGrant("k", parse_scope(scope)).allows(model) is allowed


def test_a_ring_finds_only_enabled_unexpired_keys_it_holds():
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    ring, keys = ring_of(ann=KeyGrant("ann"), old=KeyGrant("old", expires_at=past))
    assert ring.find(keys["ann"]).name == "ann"
    assert ring.find(keys["old"]) is None
    assert ring.find(new_key()) is None
    assert ring.find(keys["ann"] + "x") is None and ring.find("") is None
    assert ring.required and not EMPTY_RING.required and CLOSED_RING.required


def test_the_gate_needs_a_key_once_any_key_exists_even_without_api_key(settings):
    settings.API_KEY = ""
    ring, keys = ring_of(ann=KeyGrant("ann"))
    refused = head_refusal("POST", "/api/chat", {}, "localhost", ring)
    assert isinstance(refused, Unauthorized)
    assert isinstance(head_refusal("GET", "/v1/models", {"authorization": "Bearer " + new_key()},
                                   "localhost", ring), Unauthorized)
    assert head_refusal("POST", "/api/chat", {"x-api-key": keys["ann"]}, "localhost", ring) is None
    assert head_refusal("GET", "/api/version", {}, "localhost", ring) is None      # public
    assert head_refusal("POST", "/api/chat", {}, "localhost", EMPTY_RING) is None  # no keys: open


def test_a_ring_that_could_not_be_read_fails_closed(settings):
    settings.API_KEY = "operator-key"
    assert isinstance(head_refusal("POST", "/api/chat", {}, "localhost", CLOSED_RING), Unauthorized)
    assert key_grant({"authorization": "Bearer operator-key"}, CLOSED_RING).name == OPERATOR


@pytest.mark.parametrize("path, plain, key", [
    ("/k/lmp_abc/api/tags", "/api/tags", "lmp_abc"),
    ("/k/lmp_abc", "/", "lmp_abc"),
    ("/k/lmp_abc/", "/", "lmp_abc"),
    ("/k/lmp_abc/v1/chat/completions", "/v1/chat/completions", "lmp_abc"),
    ("/api/tags", "/api/tags", ""),
    ("/kitchen", "/kitchen", ""),
])
def test_a_key_in_the_path_is_taken_off(path, plain, key):
    assert split_path_key(path) == (plain, key)
    assert "lmp_abc" not in mask_path_key(path)


# --- with the database ---------------------------------------------------------------------------


def create(name, *options) -> str:
    from io import StringIO

    out = StringIO()
    call_command("keys", "create", name, *options, stdout=out)
    return out.getvalue().splitlines()[-1]


@pytest.mark.django_db(transaction=True)
def test_keys_create_prints_the_key_once_and_stores_its_hash():
    key = create("ann", "--aliases", "coder,chat*", "--requests-per-minute", "5", "--expires", "30d")
    row = ApiKey.objects.get(name="ann")
    assert key.startswith("lmp_") and row.key_hash == key_hash(key) and row.aliases == "coder, chat*"
    assert row.requests_per_minute == 5 and row.expires_at > datetime.now(timezone.utc) + timedelta(days=29)
    assert key not in str(list(ApiKey.objects.values()))


@pytest.mark.django_db(transaction=True)
def test_the_store_sees_a_new_key_and_a_revocation_within_its_interval():
    store = KeyStore(interval=0.2)
    try:
        assert not store.ring().required
        key = create("bob")
        deadline = time.monotonic() + 2
        while store.ring().find(key) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.ring().find(key).name == "bob"
        call_command("keys", "revoke", "bob", stdout=None)
        deadline = time.monotonic() + 2
        while store.ring().find(key) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.ring().find(key) is None and time.monotonic() < deadline
    finally:
        store.close()


@pytest.mark.django_db(transaction=True)
def test_the_store_writes_last_used_at_from_its_thread():
    create("cat")
    store = KeyStore(interval=0.1)
    try:
        store.ring()
        store.used("cat")
        deadline = time.monotonic() + 2
        while ApiKey.objects.get(name="cat").last_used_at is None and time.monotonic() < deadline:
            store.ring()
            time.sleep(0.05)
        assert ApiKey.objects.get(name="cat").last_used_at is not None
    finally:
        store.close()


# --- requests, in-process ------------------------------------------------------------------------


@pytest.fixture
def keyed(settings, routes_file, upstream_mock, transactional_db):
    settings.API_KEY = ""
    healthy_lmstudio(upstream_mock)
    state = current()
    state.keys = KeyStore(interval=0.1)  # the real store, on the test database
    yield {"all": create("all"), "coder": create("coder-only", "--aliases", "coder")}
    state.keys.close()


async def get(path, **headers):
    return await AsyncClient().get(path, headers=headers)


async def post(path, body, **headers):
    import orjson

    return await AsyncClient().post(path, orjson.dumps(body), content_type="application/json", headers=headers)


@pytest.mark.anyio
async def test_a_keyed_request_is_let_in_and_an_unknown_one_is_not(keyed):
    assert (await get("/api/tags")).status_code == 401
    assert (await get("/api/tags", authorization="Bearer " + new_key())).status_code == 401
    wrong = await get("/v1/models", authorization="Bearer " + new_key())
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert (await get("/api/tags", authorization="Bearer " + keyed["all"])).status_code == 200


@pytest.mark.anyio
async def test_a_scoped_key_sees_and_uses_only_its_models(keyed):
    auth = {"authorization": "Bearer " + keyed["coder"]}
    assert [m["name"] for m in (await get("/api/tags", **auth)).json()["models"]] == ["coder:latest"]
    assert [m["id"] for m in (await get("/v1/models", **auth)).json()["data"]] == ["coder"]
    refused = await post("/api/chat", {"model": "tiny", "messages": []}, **auth)
    assert refused.status_code == 403 and "coder-only" in refused.json()["error"]
    assert "'tiny'" in refused.json()["error"]
    refused = await post("/v1/chat/completions", {"model": "qwen2.5-7b-instruct", "messages": []}, **auth)
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "invalid_request_error"
    assert (await post("/api/show", {"model": "tiny"}, **auth)).status_code == 403
    assert (await post("/api/show", {"model": "coder"}, **auth)).status_code == 200
    assert (await post("/api/copy", {"source": "tiny", "destination": "coder"}, **auth)).status_code == 403
    assert (await post("/api/chat", {"model": "coder", "messages": [{"role": "user", "content": "hi"}],
                                     "stream": False}, **auth)).status_code == 200


@pytest.mark.anyio
async def test_an_unscoped_key_sees_everything(keyed):
    auth = {"authorization": "Bearer " + keyed["all"]}
    assert len((await get("/api/tags", **auth)).json()["models"]) > 1


def test_the_exchange_and_its_log_row_carry_the_key_name():
    from adminui.rows import LogPolicy, exchange_to_row

    key = new_key()
    exchange = Exchange(api="ollama", endpoint="/api/chat", key_name="ann", own_secrets=(key,),
                        request_body={"messages": [{"role": "user", "content": f"my key: {key}"}]},
                        response_text=f"You said: my key: {key}")
    row = exchange_to_row(exchange, LogPolicy())
    assert row["key_name"] == "ann"
    assert key not in str(row) and "my key: " in row["request_body"]


@pytest.mark.django_db
def test_the_history_filters_by_key():
    from adminui.filters import HistoryFilter
    from adminui.models import RequestLog

    base = dict(started_at=datetime.now(timezone.utc), api="ollama", endpoint="/api/chat", status=200,
                outcome="ok", duration_ms=1.0)
    RequestLog.objects.create(request_id="a", key_name="ann", **base)
    RequestLog.objects.create(request_id="b", key_name="operator", **base)
    form = HistoryFilter({"key": "ann"})
    assert form.is_valid()
    assert [r.request_id for r in form.apply(RequestLog.objects.all())] == ["a"]
    assert form.matches({"alias": "", "upstream_model": "", "api": "ollama", "status": 200, "key_name": "ann"})
    assert not form.matches({"alias": "", "upstream_model": "", "api": "ollama", "status": 200,
                             "key_name": "bob"})


# --- the admin ----------------------------------------------------------------------------------


def test_the_admin_shows_a_new_key_once_and_stores_only_its_hash(admin_client):
    import re

    saved = admin_client.post("/admin/routing/apikey/add/", {
        "name": "eve", "enabled": "on", "aliases": "coder", "max_concurrent": "2", "requests_per_minute": "",
        "tokens_per_day": "", "expires_at_0": "", "expires_at_1": ""}, follow=True)
    assert saved.status_code == 200
    page = saved.content.decode()
    key = re.search(r"lmp_[A-Za-z0-9_-]{43}", page).group(0)
    row = ApiKey.objects.get(name="eve")
    assert row.key_hash == key_hash(key) and row.prefix == key[:12] and row.max_concurrent == 2
    again = admin_client.get("/admin/routing/apikey/").content.decode()
    assert key not in again and key[:12] in again
    assert key not in admin_client.get(f"/admin/routing/apikey/{row.pk}/change/").content.decode()
    edited = admin_client.post(f"/admin/routing/apikey/{row.pk}/change/", {
        "name": "eve", "aliases": "coder,chat*", "max_concurrent": "2", "requests_per_minute": "",
        "tokens_per_day": "", "expires_at_0": "", "expires_at_1": ""}, follow=True)
    assert edited.status_code == 200 and not re.search(r"lmp_[A-Za-z0-9_-]{43}", edited.content.decode())
    row.refresh_from_db()
    assert row.key_hash == key_hash(key) and not row.enabled  # an edit keeps the key
