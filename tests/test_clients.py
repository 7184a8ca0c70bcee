"""Who the client is: X-Forwarded-For only from TRUSTED_PROXIES, and the per-client cap counting a keyed
request against its key instead of its address (units, then the real server with clients on several
loopback addresses)."""
from __future__ import annotations

import threading

import pytest

from routing.core.errors import TooManyRequests
from routing.lmstudio.admission import Admission
from routing.security.clients import client_address, networks, share
from routing.security.keys import OPERATOR_GRANT, KeyGrant
from tests.conftest import db_query, make_key, start_proxy, stop, wait_for_key
from tests.test_fairness import CHAT, client_from

PROXIES = networks(("10.0.0.0/8", "127.0.0.1", "::1"))


@pytest.mark.parametrize("remote, forwarded, expected", [
    ("192.168.1.20", None, "192.168.1.20"),                       # no header
    ("192.168.1.20", "6.6.6.6", "192.168.1.20"),                  # the peer is no proxy: the header is ignored
    ("127.0.0.1", "192.168.1.20", "192.168.1.20"),                # nginx on this machine
    ("127.0.0.1", "6.6.6.6, 192.168.1.20", "192.168.1.20"),       # the client's own forged entry is left of it
    ("127.0.0.1", "192.168.1.20, 10.1.2.3", "192.168.1.20"),      # two trusted proxies in a row
    ("10.9.9.9", "10.1.1.1, 10.2.2.2", "10.1.1.1"),               # every hop trusted: the left-most
    ("127.0.0.1", "not-an-address, 10.2.2.2", "10.2.2.2"),         # garbage ends the trusted chain
    ("127.0.0.1", "", "127.0.0.1"),
    ("::1", "2001:db8::7", "2001:db8::7"),
    ("127.0.0.1", " 192.168.1.20 ", "192.168.1.20"),
])
def test_x_forwarded_for_is_believed_only_from_trusted_proxies(remote, forwarded, expected):
    assert client_address(remote, forwarded, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_ignored():
    assert client_address("127.0.0.1", "192.168.1.20", networks(())) == "127.0.0.1"


def test_a_bad_trusted_proxy_is_refused_at_start():
    from django.test import override_settings

    from routing.checks import check_trusted_proxies

    with override_settings(TRUSTED_PROXIES=["10.0.0.0/33"]):
        [error] = check_trusted_proxies()
    assert error.id == "routing.E002" and "10.0.0.0/33" in error.msg


@pytest.mark.parametrize("grant, expected", [
    (None, ("10.0.0.1", 4)),
    (KeyGrant("ann"), ("the API key 'ann'", 4)),
    (OPERATOR_GRANT, ("the API key 'operator'", 4)),
    (KeyGrant("bob", max_concurrent=10), ("the API key 'bob'", None)),  # its own limit governs it
])
def test_whom_the_per_client_cap_counts(grant, expected):
    assert share("10.0.0.1", grant, 4) == expected


@pytest.mark.anyio
async def test_keyed_requests_from_one_address_each_have_their_share():
    admission = Admission(slots=8, per_client=1, wait=0.05)
    ann, bob = KeyGrant("ann"), KeyGrant("bob")
    held = [await admission.enter("10.0.0.1", ann), await admission.enter("10.0.0.1", bob),
            await admission.enter("10.0.0.1")]
    with pytest.raises(TooManyRequests, match="from the API key 'ann': at most 1"):
        await admission.enter("10.0.0.2", ann)  # another machine, the same key
    with pytest.raises(TooManyRequests, match="from 10.0.0.1: at most 1"):
        await admission.enter("10.0.0.1")
    for release in held:
        release()
    assert admission.by_client == {}


# --- the real server ------------------------------------------------------------------------------


def hold(url: str, address: str, headers: dict, started: threading.Event, statuses: list):
    with client_from(address) as client, client.stream("POST", f"{url}/api/chat", json=CHAT,
                                                         headers=headers) as response:
        statuses.append(response.status_code)
        started.set()
        for _ in response.iter_lines():
            pass


def holding(url: str, address: str, headers: dict, statuses: list) -> threading.Thread:
    started = threading.Event()
    thread = threading.Thread(target=hold, args=(url, address, headers, started, statuses))
    thread.start()
    assert started.wait(10)
    return thread


def post(url: str, address: str, **headers):
    with client_from(address) as client:
        return client.post(f"{url}/api/chat", json={**CHAT, "stream": False}, headers=headers)


@pytest.mark.e2e
def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_share(fake, tmp_path):
    fake.script(tokens=20, delay=0.1)
    server = start_proxy(tmp_path, fake.url, MAX_CLIENT_REQUESTS=1, TRUSTED_PROXIES="127.0.0.5")
    threads, statuses = [], []
    try:
        threads.append(holding(server.url, "127.0.0.5", {"X-Forwarded-For": "10.1.1.1"}, statuses))
        over = post(server.url, "127.0.0.5", **{"X-Forwarded-For": "10.1.1.1"})
        assert over.status_code == 429 and "from 10.1.1.1" in over.json()["error"]
        assert post(server.url, "127.0.0.5", **{"X-Forwarded-For": "10.1.1.2"}).status_code == 200
        # from an address that is no trusted proxy, the header names nobody: the peer is the client
        threads.append(holding(server.url, "127.0.0.6", {"X-Forwarded-For": "10.1.1.3"}, statuses))
        over = post(server.url, "127.0.0.6", **{"X-Forwarded-For": "10.1.1.4"})
        assert over.status_code == 429 and "from 127.0.0.6" in over.json()["error"]
    finally:
        for thread in threads:
            thread.join(20)
        stop(server.proc)
    assert statuses == [200, 200]
    clients = {row["client"] for row in db_query(server, "SELECT client FROM adminui_requestlog")}
    assert {"10.1.1.1", "10.1.1.2", "127.0.0.6"} <= clients and "127.0.0.5" not in clients


@pytest.mark.e2e
def test_keyed_requests_count_against_their_key_not_their_address(fake, tmp_path):
    fake.script(tokens=40, delay=0.1)  # each answer takes about 4 s
    server = start_proxy(tmp_path, fake.url, MAX_CLIENT_REQUESTS=1)
    ann, bob = (make_key(server, name) for name in ("ann", "bob"))
    for key in (ann, bob):
        wait_for_key(server, key)
    threads, statuses = [], []
    try:
        threads.append(holding(server.url, "127.0.0.7", {"Authorization": f"Bearer {ann}"}, statuses))
        over = post(server.url, "127.0.0.8", Authorization=f"Bearer {ann}")  # ann's key from another machine
        assert over.status_code == 429 and "the API key 'ann'" in over.json()["error"]
        # bob shares ann's address (one NAT, one office): his own share
        assert post(server.url, "127.0.0.7", Authorization=f"Bearer {bob}").status_code == 200
    finally:
        for thread in threads:
            thread.join(20)
        stop(server.proc)
    assert statuses == [200]
