"""ASGI entry point: `daphne shimsite.asgi:application` (and what `manage.py runserver` serves).

HTTP goes to Django (static files for the admin served first); WebSockets are routed by Channels.
The API paths (`routing.core.paths`) get a lean Django handler: only `settings.API_MIDDLEWARE`
(async-native) and no per-request thread pool. Django's stock stack adapts every sync middleware
method with `sync_to_async`, a thread hop each, about a dozen per request: most of the proxy's CPU.
"""
import asyncio
import contextlib
import io
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shimsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import ImproperlyConfigured, RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.core.signals import request_finished, request_started  # noqa: E402
from django.urls import path, set_script_prefix  # noqa: E402
from django.utils.log import log_response  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402

from adminui.consumers import HistoryConsumer  # noqa: E402
from shimsite import server  # noqa: E402

from routing.config.loader import RouteTableError  # noqa: E402
from routing.core.paths import is_api_path  # noqa: E402
from routing.proxy import state  # noqa: E402

# The application's state is made now, not in the first request (its clients to LM Studio too: that
# request was about 0.2 s slower; their connections are opened on first use, on the server's loop).
try:  # refuse to start on a broken routes file, and say why in one line
    state.current()
except RouteTableError as exc:
    sys.exit(f"error: {exc}")

MIDDLEWARE_HOOKS = ("process_view", "process_template_response", "process_exception")


class ApiHandler(ASGIHandler):
    """Django's ASGI handler for the API: `settings.API_MIDDLEWARE` instead of `MIDDLEWARE`, and no
    `ThreadSensitiveContext` (which starts and joins a thread per request); the few sync calls Django
    still makes (the request_started receivers, `response.close`) share asgiref's one sync thread."""

    def load_middleware(self, is_async=False):
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = convert_exception_to_response(self._get_response_async)
        for dotted in reversed(settings.API_MIDDLEWARE):
            middleware = import_string(dotted)
            hooks = [hook for hook in MIDDLEWARE_HOOKS if hasattr(middleware, hook)]
            if not getattr(middleware, "async_capable", False) or hooks:
                raise ImproperlyConfigured(f"API_MIDDLEWARE: {dotted} must be async-capable, without "
                                           f"{'/'.join(MIDDLEWARE_HOOKS)} (each would be a thread hop)")
            handler = convert_exception_to_response(middleware(handler))
        self._middleware_chain = handler

    async def __call__(self, scope, receive, send):
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        """Django 5.2's `ASGIHandler.handle`, less its last thread hop: `response.close()` is called
        here, on the loop, not through `sync_to_async`. Closing an API response runs no sync work: the
        `request_finished` receivers are kept for the site's handler (`keep_database_receivers_off_the_api`),
        and API responses hold no files. The hop was a thread-pool round trip and a self-pipe wake-up
        per request, the largest single cost left on the API path."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
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
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
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
    from django.core.cache import close_caches
    from django.core.handlers.base import reset_urlconf
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, reset_queries

    for signal, receivers in ((request_started, (close_old_connections, reset_queries)),
                              (request_finished, (close_old_connections, close_caches, reset_urlconf))):
        for receiver in receivers:
            if signal.disconnect(receiver):
                for sender in (ASGIHandler, WSGIHandler):
                    signal.connect(receiver, sender=sender)


keep_database_receivers_off_the_api()
server.install()  # head checked before the body is read, slow clients dropped (shimsite/server.py)


class SplitHTTP:
    """API paths to the lean handler, everything else (admin, history, static) to the full stack."""

    def __init__(self, api, site):
        self.api, self.site = api, site

    async def __call__(self, scope, receive, send):
        app = self.api if is_api_path(scope["path"]) else self.site
        await app(scope, receive, send)


websocket_urlpatterns = [
    path("ws/history/", HistoryConsumer.as_asgi()),
]

application = ProtocolTypeRouter({
    "http": SplitHTTP(ApiHandler(), ASGIStaticFilesHandler(django_asgi_app)),
    # The host and the whole origin (scheme, host, port) are checked by the consumer.
    "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
})
server.tune_gc()  # everything is imported and built: keep it out of the collector's way
