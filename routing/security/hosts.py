"""Which `Host` and `Origin` headers the proxy answers: defeat DNS rebinding and cross-site requests
without locking out the LAN. Pure functions of header values and settings; `routing.security.access` (and the
Twisted gate in `shimsite.server`) apply them.

Hosts: a DNS-rebinding attack always arrives with the attacker's domain name in `Host` (the browser
believes it talks to that domain), so an IP literal, `localhost`, the names that never leave the LAN
(`*.localhost`, `*.local`, `*.internal`, Docker's `host.docker.internal`) and this machine's own name are
safe to answer; any other domain name needs `ALLOWED_HOSTS`. This is Ollama's rule (server/routes.go,
`allowedHost`).

Origins: a browser page may send a "simple" request (a text/plain POST) to any address without a CORS
preflight; missing CORS headers only stop it from reading the answer, not the side effect. So a request
with an `Origin` not allowed is refused outright, whatever its method, as Ollama does. The defaults are
Ollama's (envconfig `AllowedOrigins`): this machine's loopback origins on any port, and desktop-app
schemes. Requests without an `Origin` (CLIs, SDKs, curl) are not browsers and pass.
"""
from __future__ import annotations

import functools
import ipaddress
import re
import socket
from typing import Iterable

from django.http.request import split_domain_port, validate_host

# Ollama's defaults (envconfig): http(s) on localhost, 127.0.0.1, 0.0.0.0 and [::1], any port; app
# schemes of desktop shells (Electron, Tauri, VS Code webviews).
DEFAULT_ORIGIN_REGEXES = (
    r"^https?://(localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(:\d{1,5})?$",
    r"^(app|file|tauri|vscode-webview|vscode-file)://.*$",
)
LAN_SUFFIXES = (".localhost", ".local", ".internal")


@functools.lru_cache(maxsize=1)
def own_names() -> frozenset[str]:
    """This machine's host name, short and fully qualified, lower case."""
    names = {socket.gethostname().lower()}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:  # pragma: no cover - a resolver failure leaves the plain host name
        pass
    return frozenset(n.rstrip(".") for n in names if n)


def is_ip_literal(domain: str) -> bool:
    try:
        ipaddress.ip_address(domain.strip("[]"))
    except ValueError:
        return False
    return True


def host_allowed(host: str, extra: Iterable[str], machine: Iterable[str] = ()) -> bool:
    """Whether a `Host` header value (port included or not) may be answered.

    `extra` are `ALLOWED_HOSTS` entries (Django's patterns: `.example.com`, `*`); `machine` this
    machine's names.
    """
    domain, _port = split_domain_port(host.lower())
    if not domain:
        return False
    if is_ip_literal(domain) or domain == "localhost" or domain.endswith(LAN_SUFFIXES):
        return True
    return domain in machine or validate_host(domain, list(extra))


def origin_allowed(origin: str, extra: Iterable[str] = (), regexes: Iterable[str] = DEFAULT_ORIGIN_REGEXES,
                   allow_all: bool = False) -> bool:
    """Whether a browser page of `origin` may call the API: the defaults, or `CORS_ALLOWED_ORIGINS`."""
    if allow_all:
        return True
    origin = origin.strip()
    if origin in extra:
        return True
    return any(re.match(pattern, origin) for pattern in regexes)


def same_origin(origin: str, scheme: str, host: str) -> bool:
    """Whether `origin` names exactly this server: scheme, host and port (a page on another port of
    the same host is another origin). `scheme` is "http"/"https" (or "ws"/"wss")."""
    if not origin or not host:
        return False
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return _normalised(origin) == _normalised(f"{scheme}://{host}")


def _normalised(origin: str) -> tuple[str, str, int | None]:
    scheme, _, rest = origin.lower().partition("://")
    domain, port = split_domain_port(rest)
    default = {"http": 80, "https": 443}.get(scheme)
    try:
        number = int(port) if port else default
    except ValueError:
        number = -1
    return scheme, domain, number
