"""The fast path: the server's speed-ups that lean on private names of Twisted, Daphne, Django and
aiohttp, the list of those names, and the one switch that turns them on at start-up.

- the gate and the write-through sends in Twisted (`shimsite.server`), on Twisted's and Daphne's names
  (TWISTED_AND_DAPHNE);
- the lean handler for the API paths (`ApiHandler`, here), on Django's (DJANGO);
- the upstream stream reads (`routing.lmstudio.events`), on aiohttp's, which that module lists itself.

`start(settings.FAST_PATH)` runs once, when shimsite/asgi.py is imported (by Daphne and by
`manage.py runserver` alike). With FAST_PATH on and every listed name found in the installed packages,
it installs all of it; with one name missing, or FAST_PATH off, it installs none of it and says so in
the log. The stock path is then Daphne and Django as shipped: every path goes through the full
MIDDLEWARE, whose ApiAccessMiddleware applies the same host, origin, API key and size policy once
Daphne has read the body, and Django refuses a body over MAX_REQUEST_BYTES (a 413 in the dialect's
shape, `routing.proxy.bodies`). Why each name is used, and what is lost without it: docs/internals.md.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import logging

from django.conf import settings
from django.core import cache
from django.core.exceptions import ImproperlyConfigured, RequestAborted
from django.core.handlers import asgi as django_asgi
from django.core.handlers import base, exception
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, reset_queries
from django.urls import set_script_prefix
from django.utils import log as django_log
from django.utils.module_loading import import_string

from routing.core.internals import missing_from, source_digest
from routing.core.paths import is_api_path
from routing.lmstudio import events
from shimsite import server

log = logging.getLogger("routing.server")

# The private (or undocumented) names the fast path uses, for the versions requirements.txt pins
# exactly. "a.b.C.name": the module or class has it; "name in a.b.C.method": that code still uses it (an
# attribute set or read there, a method called there), for what lives on instances only. They are looked
# up when used, never imported by name, so that a missing one cannot stop the stock path from starting.
TWISTED_AND_DAPHNE = (  # Twisted 26.10.0, Daphne 4.2.3: shimsite/server.py
    # GatedRequest: the head gate and the body cap, called by Twisted's HTTP/1.1 channel as a request arrives
    "twisted.web.http.Request.gotLength",
    "gotLength in twisted.web.http.HTTPChannel.allHeadersReceived",
    "twisted.web.http.Request.handleContentChunk",
    "handleContentChunk in twisted.web.http.HTTPChannel._maybeChooseTransferDecoder",
    "_command in twisted.web.http.HTTPChannel.lineReceived",
    "_path in twisted.web.http.HTTPChannel.lineReceived",
    "_parsePOSTFormSubmission in twisted.web.http.Request.requestReceived",
    "daphne.http_protocol.WebRequest.handle_reply",
    # write_through and hold: Twisted's TCP writes
    "twisted.internet.abstract.FileDescriptor.write",
    "twisted.internet.abstract.FileDescriptor.writeSequence",
    "twisted.internet.abstract.FileDescriptor.dataBuffer",
    "_tempDataBuffer in twisted.internet.abstract.FileDescriptor.__init__",
    "twisted.internet.abstract.FileDescriptor._writeDisconnected",
    "twisted.internet.tcp.Connection.writeSomeData",
    # install: Daphne's HTTP factory, and its view of twisted.web.http
    "daphne.http_protocol.HTTPFactory.buildProtocol",
    "daphne.http_protocol.HTTPFactory.log",
    "daphne.http_protocol.http",
    "_module in twisted.python.deprecate._ModuleProxy.__init__",
)
DJANGO = (  # Django 5.2.19: ApiHandler and keep_database_receivers_off_the_api, below
    "load_middleware in django.core.handlers.asgi.ASGIHandler.__init__",
    "django.core.handlers.base.BaseHandler._view_middleware",
    "django.core.handlers.base.BaseHandler._template_response_middleware",
    "django.core.handlers.base.BaseHandler._exception_middleware",
    "django.core.handlers.base.BaseHandler._get_response_async",
    "resolve_request in django.core.handlers.base.BaseHandler._get_response_async",
    "get_response_async in django.core.handlers.asgi.ASGIHandler.run_get_response",
    "django.core.handlers.asgi.ASGIHandler.read_body",
    "django.core.handlers.asgi.ASGIHandler.create_request",
    "django.core.handlers.asgi.ASGIHandler.run_get_response",
    "django.core.handlers.asgi.ASGIHandler.send_response",
    "django.core.handlers.asgi.ASGIHandler.listen_for_disconnect",
    "django.core.handlers.asgi.get_script_prefix",
    "django.core.handlers.exception.convert_exception_to_response",
    "_resource_closers in django.http.response.HttpResponseBase.__init__",
    "django.utils.log.log_response",
    "django.core.handlers.base.reset_urlconf",
    "django.core.cache.close_caches",
)
INTERNALS = TWISTED_AND_DAPHNE + DJANGO
# Code copied here, and the SHA-256 of its source when it was copied: a new release that changes it (a
# fix the copy would lack) turns the fast path off until the copy is looked at again.
COPIED = {"django.core.handlers.asgi.ASGIHandler.handle":
          "98faeb5bef800331e6a8002fbc96b30e4122a23438ae45a047190a531ea11323"}


def missing() -> list[str]:
    """The entries of INTERNALS the installed Twisted, Daphne and Django lack, and the code in COPIED
    that changed since it was copied (empty when the fast path can run)."""
    changed = [f"{where} as copied by shimsite/fast_path.py" for where, digest in COPIED.items()
               if source_digest(where) != digest]
    return missing_from(INTERNALS) + changed


def start(enabled: bool) -> bool:
    """Install the fast path if `enabled` (FAST_PATH) and every name it needs is there (`missing()` and
    `routing.lmstudio.events.missing()` find nothing); else install none of it and log why. Returns
    whether it is on: shimsite/asgi.py then serves the API paths with `ApiHandler`, else with Django's
    own handler. Once, at start-up."""
    if not enabled:
        log.info("FAST_PATH is off: the server runs on stock Daphne and Django behaviour (the access checks "
                 "are made once Daphne has read a request's body; docs/internals.md)")
        return False
    absent = missing() + events.missing()
    if absent:
        log.warning("fast path off: the installed packages lack %s. The server runs on stock Daphne and "
                    "Django behaviour (the access checks are made once Daphne has read a request's body). "
                    "requirements.txt pins the versions the fast path was written for; docs/internals.md "
                    "says what each name is for.", ", ".join(absent))
        return False
    keep_database_receivers_off_the_api()
    server.install()  # head checked before the body is read, slow clients dropped
    events.use_internals(True)  # aiohttp's reads without the per-chunk timer
    log.debug("fast path on")
    return True


# --- the lean handler for the API paths --------------------------------------------------------------

MIDDLEWARE_HOOKS = ("process_view", "process_template_response", "process_exception")


class ApiHandler(ASGIHandler):
    """Django's ASGI handler for the API paths (`routing.core.paths`): `settings.API_MIDDLEWARE`
    (async-native) instead of `MIDDLEWARE`, and no `ThreadSensitiveContext` (which starts and joins a
    thread per request); the few sync calls Django still makes (the request_started receivers,
    `response.close`) share asgiref's one sync thread. Django's stock stack adapts every sync middleware
    method with `sync_to_async`, a thread hop each, about a dozen per request: most of the proxy's CPU."""

    def load_middleware(self, is_async=False):
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = exception.convert_exception_to_response(self._get_response_async)
        for dotted in reversed(settings.API_MIDDLEWARE):
            middleware = import_string(dotted)
            hooks = [hook for hook in MIDDLEWARE_HOOKS if hasattr(middleware, hook)]
            if not getattr(middleware, "async_capable", False) or hooks:
                raise ImproperlyConfigured(f"API_MIDDLEWARE: {dotted} must be async-capable, without "
                                           f"{'/'.join(MIDDLEWARE_HOOKS)} (each would be a thread hop)")
            handler = exception.convert_exception_to_response(middleware(handler))
        self._middleware_chain = handler

    async def __call__(self, scope, receive, send):
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        """Django 5.2's `ASGIHandler.handle` (COPIED), less its last thread hop: `response.close()` is
        called here, on the loop, not through `sync_to_async`. Closing an API response runs no sync work:
        the `request_finished` receivers are kept for the site's handler
        (`keep_database_receivers_off_the_api`), and API responses hold no files. The hop was a thread-pool
        round trip and a self-pipe wake-up per request, the largest single cost left on the API path."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(django_asgi.get_script_prefix(scope))
        await request_started.asend(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request():
            response = await self.run_get_response(request)
            with_length(response)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:  # the client disconnected while it was sent
                pass
            return response

        # As Django: a client that disconnects cancels the request (and so the upstream call).
        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)), asyncio.create_task(process_request())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                with contextlib.suppress(RequestAborted):
                    task.result()
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await request_finished.asend(sender=self.__class__)
        else:
            response.close()
        body_file.close()

    async def get_response_async(self, request):
        """Django's, less the `set_urlconf` per request (an asgiref Local write, ~3% of the CPU): the
        API's URLconf is the project's and never changes."""
        response = await self._middleware_chain(request)
        response._resource_closers.append(request.close)
        if response.status_code >= 400:
            django_log.log_response("%s: %s", response.reason_phrase, request.path, response=response,
                                    request=request)
        return response

    def resolve_request(self, request):
        """Django's URL resolution, remembered per path: the API has a handful of fixed paths (and
        `/v1/models/<id>`, left to Django), and resolving them again was about 3% of the CPU."""
        match = _resolved.get(request.path_info)
        if match is None:
            match = super().resolve_request(request)
            if not match.kwargs and len(_resolved) < 64:
                _resolved[request.path_info] = match
        request.resolver_match = match
        return match

    async def read_body(self, receive):
        """The body in memory, in one piece. Django spools a body over FILE_UPLOAD_MAX_MEMORY_SIZE
        (2.5 MB) to disk; an API body is JSON the view parses whole anyway, and is bounded by
        MAX_REQUEST_BYTES before it gets here (shimsite/server.py)."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            if body := message.get("body", b""):
                chunks.append(body)
            if not message.get("more_body", False):
                return io.BytesIO(b"".join(chunks))  # one chunk: no copy (join and BytesIO share it)


class SplitHTTP:
    """API paths to the lean handler, everything else (admin, history, static) to the full stack."""

    def __init__(self, api, site):
        self.api, self.site = api, site

    async def __call__(self, scope, receive, send):
        app = self.api if is_api_path(scope["path"]) else self.site
        await app(scope, receive, send)


def with_length(response):
    """A whole (not streamed) answer gets its Content-Length, as CommonMiddleware gives the site's: without
    it Daphne sends the body chunked, as three writes (head, chunk, terminator) instead of one."""
    if not response.streaming and not response.has_header("Content-Length") and \
            response.status_code not in (204, 304) and response.status_code >= 200:
        response.headers["Content-Length"] = str(len(response.content))


_resolved: dict = {}  # path -> ResolverMatch, for ApiHandler (the URLconf never changes at run time)


def keep_database_receivers_off_the_api():
    """Django's `request_started` and `request_finished` receivers (`close_old_connections`,
    `reset_queries`, `close_caches`, `reset_urlconf`) are sync: each API request would pay a thread hop
    for them, for database connections and caches API views never use (the registry and the request
    log have their own, and close them themselves). Keep them for the site's handler (admin, history),
    which is what they are for."""
    for signal, receivers in ((request_started, (close_old_connections, reset_queries)),
                              (request_finished, (close_old_connections, cache.close_caches, base.reset_urlconf))):
        for receiver in receivers:
            if signal.disconnect(receiver):
                for sender in (ASGIHandler, WSGIHandler):
                    signal.connect(receiver, sender=sender)
