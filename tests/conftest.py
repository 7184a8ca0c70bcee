"""Shared fixtures.

Unit tests get an injected fake upstream (respx) through `upstream_mock`. End-to-end tests get real
processes: the fake LM Studio (`tests/fake_lmstudio.py`) and the proxy under Daphne, both on free
loopback ports, started once per session.
"""
from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

E2E_ROUTES = """
defaults:
  ttl: 10m
  passthrough: true
aliases:
  coder:
    model: qwen2.5-7b-instruct
    ttl: 30m
    temperature: 0.2
    system: "You are terse."
    options: {top_p: 0.9}
  tiny: llama-3.2-1b-instruct
  thinker: qwen3-4b-thinking
  vision: qwen2-vl-2b-instruct
  embedder: text-embedding-nomic-embed-text-v1.5
"""


# --- unit-test seam ----------------------------------------------------------------------------


@pytest.fixture
def anyio_backend():
    return "asyncio"


def use_state(settings):
    """Build the application's state from the test's settings (LM Studio clients on httpx's own
    transport, which respx mocks; no request log) and install it; the `app_state` fixture restores the
    previous one after the test. Call it again after changing a setting the state is made from."""
    from routing.proxy import state

    built = state.build(settings, transport=httpx.AsyncHTTPTransport, observers=[], keys=NoKeys())
    state.install(built)
    return built


class NoKeys:
    """The key store of in-process tests: no keys in the database (no thread, no query). Tests of the
    keys install a real `routing.proxy.keystore.KeyStore` (tests/test_keys.py)."""

    def ring(self):
        from routing.security.keys import EMPTY_RING

        return EMPTY_RING

    def invalidate(self):
        pass

    def used(self, name):
        pass

    def close(self):
        pass


@pytest.fixture(autouse=True)
def app_state():
    """Each test its own application state: nothing carries over from one test (or event loop) to the
    next. In-process tests do not feed the request log: its writer thread would race the test database
    (the log's own tests call it directly; end-to-end servers log as in production)."""
    from django.conf import settings

    from routing.proxy import state

    previous = state.built()
    yield use_state(settings)
    state.install(previous)


@pytest.fixture
def upstream_mock(settings):
    """A respx router standing in for LM Studio at the proxy's LMSTUDIO_URL."""
    import respx

    base = "http://lmstudio.test"
    with respx.mock(base_url=base, assert_all_called=False) as router:
        # An LM Studio older than 0.4 unless a test says otherwise: no native /api/v1.
        router.get("/api/v1/models").mock(return_value=httpx.Response(
            200, json={"error": "Unexpected endpoint or method. (GET /api/v1/models)"}))
        settings.LMSTUDIO_URL = base
        use_state(settings)
        yield router


@pytest.fixture
def routes_file(tmp_path, settings, db):
    """Point the proxy at a temporary routes.yaml (and allow the database: the effective table merges
    the admin's aliases over the file)."""
    path = tmp_path / "routes.yaml"
    path.write_text(E2E_ROUTES)
    settings.ROUTES_FILE = path
    use_state(settings)
    yield path


@pytest.fixture(autouse=True, scope="session")
def test_client_host_allowed():
    """Django's test client sends `Host: testserver`, a domain name the host policy (routing/security/hosts.py)
    refuses; allow it in-process, as Django's test set-up does for its own ALLOWED_HOSTS."""
    from django.conf import settings

    settings.PROXY_ALLOWED_HOSTS = [*settings.PROXY_ALLOWED_HOSTS, "testserver"]


@pytest.fixture(autouse=True, scope="session")
def proxy_logs_reach_caplog():
    """The proxy's loggers (`routing.*`) print through their own handler and stop there (settings.LOGGING);
    pytest's `caplog` listens on the root logger, so in-process tests let them go on to it."""
    import logging

    logging.getLogger("routing").propagate = True


# --- processes for end-to-end tests ------------------------------------------------------------


async def table_once_checked(registry, ready, tries: int = 200):
    """The registry's table once `ready(table)` holds (or the last one after `tries`): the request after
    the check interval starts the database check without waiting for it (routing/registry.py)."""
    for _ in range(tries):
        table = await registry.table()
        if ready(table):
            break
        await asyncio.sleep(0.01)
    return table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"process did not print {prefix!r} in {timeout}s")


def wait_until_serving(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up in {timeout}s")


def stop(proc: subprocess.Popen):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class FakeLMStudio:
    url: str
    proc: subprocess.Popen

    def requests(self, path: str | None = None) -> list[dict]:
        seen = httpx.get(f"{self.url}/_fake/requests").json()
        return [r for r in seen if path is None or r["path"] == path]

    def reset(self):
        httpx.post(f"{self.url}/_fake/reset")

    def script(self, **behaviour):
        httpx.post(f"{self.url}/_fake/script", json=behaviour).raise_for_status()

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_fake/stats").json()

    def served(self) -> dict:
        """Instance id -> generation requests it served."""
        return httpx.get(f"{self.url}/_fake/served").json()


def start_fake_lmstudio(port: int = 0) -> FakeLMStudio:
    proc = subprocess.Popen([PY, str(ROOT / "tests" / "fake_lmstudio.py"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.PIPE, text=True)
    line = wait_for_line(proc, "LISTENING")
    return FakeLMStudio(f"http://127.0.0.1:{line.split()[1]}", proc)


@dataclass
class ProxyServer:
    url: str
    proc: subprocess.Popen
    routes: Path
    env: dict


def proxy_env(tmp: Path, lmstudio_url: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "shimsite.settings",
        "LMSTUDIO_URL": lmstudio_url,
        "ROUTES_FILE": str(tmp / "routes.yaml"),
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "SECRET_KEY": "e2e-test-secret",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def server_command(port: int, runserver: bool = False) -> list[str]:
    """The proxy under Daphne, as in production, or under `manage.py runserver` (the README's ./serve)."""
    if runserver:
        return [PY, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    return [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "shimsite.asgi:application"]


def start_proxy(tmp: Path, lmstudio_url: str, routes: str = E2E_ROUTES, runserver: bool = False,
                **extra) -> ProxyServer:
    """Migrate a fresh database and start the proxy (`server_command`)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "routes.yaml").write_text(routes)
    env = proxy_env(tmp, lmstudio_url, **extra)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    port = free_port()
    # The server's output goes to a file, never a pipe nobody reads (a full pipe would block it).
    with open(tmp / "server.log", "ab") as log:
        proc = subprocess.Popen(server_command(port, runserver), cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, proc, tmp / "server.log")
    return ProxyServer(url, proc, tmp / "routes.yaml", env)


def db_path(server: ProxyServer) -> Path:
    return Path(server.env["DATABASE_URL"].removeprefix("sqlite:///"))


def db_query(server: ProxyServer, sql: str, *params) -> list[dict]:
    """Rows from a (SQLite) test server's database, read directly."""
    import sqlite3

    with sqlite3.connect(db_path(server)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, params)]


@pytest.fixture(scope="session")
def fake_lmstudio():
    fake = start_fake_lmstudio()
    yield fake
    stop(fake.proc)


@pytest.fixture(scope="session")
def proxy_server(fake_lmstudio, tmp_path_factory):
    server = start_proxy(tmp_path_factory.mktemp("proxy"), fake_lmstudio.url)
    yield server
    stop(server.proc)


@pytest.fixture
def fake(fake_lmstudio):
    """The fake LM Studio, with its recorded requests and script cleared for this test."""
    fake_lmstudio.reset()
    yield fake_lmstudio
    fake_lmstudio.reset()


@pytest.fixture
def ollama_client(proxy_server):
    import ollama

    return ollama.Client(host=proxy_server.url, timeout=30)


@pytest.fixture
def openai_client(proxy_server):
    import openai

    return openai.OpenAI(base_url=f"{proxy_server.url}/v1", api_key="unused", timeout=30, max_retries=0)


# --- browser -----------------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def chromium_executable() -> str:
    """Debian's Chromium; on CI its absence fails the run, on a developer machine it skips the test."""
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(exe):
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("Chromium is not installed: apt-get install chromium")
    return exe


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (no browser download). On CI a missing
    Chromium fails the run; on a developer machine it skips the browser tests.

    Module-scoped: Playwright's sync API keeps an event loop running while it is open, which async
    tests in other modules could not share."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium_executable(), headless=True, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 850})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def make_superuser(server: ProxyServer, username: str = "admin", password: str = "correct-horse-42"):
    """Create (or reset) a superuser in the server's database; returns (username, password)."""
    code = ("from django.contrib.auth import get_user_model; U = get_user_model(); "
            f"u, _ = U.objects.get_or_create(username={username!r}); u.is_staff = u.is_superuser = True; "
            f"u.set_password({password!r}); u.save()")
    subprocess.run([PY, "manage.py", "shell", "-c", code], cwd=ROOT, env=server.env, check=True)
    return username, password


def admin_login(page, server: ProxyServer, username: str, password: str):
    page.goto(f"{server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{server.url}/admin/")


# --- PostgreSQL and Redis, for the several-instances tests ----------------------------------------


def _needs(what: str):
    """On CI a missing service binary fails the run (.ci/run installs it); locally the test skips."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed (.ci/run installs it)")
    pytest.skip(f"{what} is not installed")


def _postgres_binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))  # Debian keeps them off the PATH
    return found[-1] if found else shutil.which(name)


class PostgresCluster:
    """A throwaway PostgreSQL cluster on a loopback port (trust authentication, data in a temp dir),
    run with Debian's initdb and pg_ctl; as root they run as the `postgres` user. It can be stopped and
    started again on the same port (a database restart)."""

    def __init__(self):
        initdb, self.pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
        if not initdb or not self.pg_ctl:
            _needs("PostgreSQL (apt-get install postgresql)")
        self.base = Path(tempfile.mkdtemp(prefix="proxy-pg-"))  # not under pytest's 0700 root-owned temp
        self.as_owner = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.data, self.port = self.base / "data", free_port()
        subprocess.run([*self.as_owner, initdb, "-D", str(self.data), "-U", "proxy", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True)
        self.url = f"postgres://proxy@127.0.0.1:{self.port}/postgres"

    def start(self):
        subprocess.run([*self.as_owner, self.pg_ctl, "-D", str(self.data), "-l", str(self.base / "log"), "-w",
                        "-t", "60", "-o", f"-h 127.0.0.1 -p {self.port} -k {self.base}", "start"],
                       check=True, capture_output=True)

    def stop(self):
        """A fast shutdown: open connections are cut, as in a restart for an upgrade."""
        subprocess.run([*self.as_owner, self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"],
                       capture_output=True)

    def remove(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.remove()


class RedisServer:
    """A throwaway redis-server on a loopback port, with no persistence; it can be stopped and started
    again on the same port (Redis going away and coming back)."""

    def __init__(self):
        self.exe = shutil.which("redis-server")
        if not self.exe:
            _needs("Redis (apt-get install redis-server)")
        self.port, self.proc = free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen([self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    stop(self.proc)
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)

    def stop(self):
        if self.proc is not None:
            stop(self.proc)


@pytest.fixture(scope="session")
def redis_url():
    server = RedisServer()
    server.start()
    yield server.url
    server.stop()


@contextlib.contextmanager
def two_instances(tmp_path_factory, lmstudio_url: str, database_url: str, redis_url: str):
    """Two proxy processes on one database and one Redis (several instances chosen by settings alone)."""
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    first = start_proxy(tmp_path_factory.mktemp("one"), lmstudio_url, **env)
    try:
        second = start_proxy(tmp_path_factory.mktemp("two"), lmstudio_url, **env)
    except BaseException:
        stop(first.proc)
        raise
    try:
        yield first, second
    finally:
        stop(first.proc)
        stop(second.proc)


def make_key(server, name: str, *options: str) -> str:
    """A new API key from `manage.py keys create` (the last line of its output) for a test server."""
    done = subprocess.run([PY, "manage.py", "keys", "create", name, *options], cwd=ROOT, env=server.env,
                          check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def wait_for_key(server, key: str, timeout: float = 5.0):
    """The running server reads the keys again about once a second: wait until it requires a key (before
    the first, the API is open to any) and serves this one."""
    deadline = time.monotonic() + timeout
    while (httpx.get(f"{server.url}/api/tags").status_code != 401
           or httpx.get(f"{server.url}/api/tags", headers={"Authorization": f"Bearer {key}"}).status_code != 200):
        assert time.monotonic() < deadline, "the server never saw the new key"
        time.sleep(0.05)
