"""The processes under test: the fake LM Studio and the proxy under Daphne, started with the same
helpers the end-to-end tests use (`tests/conftest.py`), pinned to cores when `taskset` exists."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import FakeLMStudio, ProxyServer, start_fake_lmstudio, start_proxy, stop  # noqa: E402

ALIAS = "bench"
UPSTREAM_MODEL = "qwen2.5-7b-instruct"  # loaded in the fake's default catalogue: no JIT load on the path
BENCH_ROUTES = f"""
aliases:
  {ALIAS}:
    model: {UPSTREAM_MODEL}
    temperature: 0.2
"""
# The proxy gets a core of its own; the fake LM Studio the other, shared with the client side (this
# script and wrk, `client_on_fake_core`): on a 2-core machine there is no third core to give them.
PROXY_CPU, FAKE_CPU = 0, 1


def pin(pid: int, cpu: int) -> str:
    """Pin every thread of a process to one core; returns a description for the report."""
    if shutil.which("taskset") is None:
        return "not pinned (no taskset)"
    result = subprocess.run(["taskset", "-a", "-c", "-p", str(cpu), str(pid)], capture_output=True, text=True)
    return f"cpu {cpu}" if result.returncode == 0 else f"not pinned ({result.stderr.strip()})"


@dataclass
class Proxy:
    label: str
    server: ProxyServer
    pinned: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int:
        return self.server.proc.pid


@dataclass
class Processes:
    """The fake upstream and the proxies (request log on and off), all on loopback ports."""

    fake: FakeLMStudio
    fake_pinned: str
    proxies: dict[str, Proxy]
    tmp: tempfile.TemporaryDirectory

    def add_proxy(self, label: str, **settings) -> Proxy:
        """Start one more proxy (stopped with the others) with its own database and `settings`."""
        server = start_proxy(Path(self.tmp.name) / label, self.fake.url, routes=BENCH_ROUTES, **settings)
        self.proxies[label] = Proxy(label, server, pin(server.proc.pid, PROXY_CPU))
        return self.proxies[label]

    def close(self):
        for proxy in self.proxies.values():
            stop(proxy.server.proc)
        stop(self.fake.proc)
        self.tmp.cleanup()


def start_processes(log_settings: dict[str, str], runserver: frozenset[str] = frozenset()) -> Processes:
    """Start the fake and one proxy per `label -> REQUEST_LOG value`: under Daphne, or under
    `manage.py runserver` for the labels in `runserver`."""
    tmp = tempfile.TemporaryDirectory(prefix="shim-bench-")
    fake = start_fake_lmstudio()
    fake_pinned = pin(fake.proc.pid, FAKE_CPU)
    proxies: dict[str, Proxy] = {}
    try:
        for label, request_log in log_settings.items():
            server = start_proxy(Path(tmp.name) / label, fake.url, routes=BENCH_ROUTES,
                                 runserver=label in runserver, REQUEST_LOG=request_log)
            proxies[label] = Proxy(label, server, pin(server.proc.pid, PROXY_CPU))
    except BaseException:
        Processes(fake, fake_pinned, proxies, tmp).close()
        raise
    return Processes(fake, fake_pinned, proxies, tmp)


@contextlib.contextmanager
def client_on_fake_core():
    """Run this process (and wrk, its child) on the fake's core for the block. Left to the scheduler, the
    client woke up on the proxy's core half the time and waited there for the proxy to finish its
    work: up to a millisecond added to the proxy's time to first byte that the proxy did not cause."""
    if not hasattr(os, "sched_setaffinity") or FAKE_CPU not in os.sched_getaffinity(0):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {FAKE_CPU})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def memory_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in MB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024  # kB
    return {"rss_mb": values["VmRSS"], "peak_mb": values["VmHWM"]}
