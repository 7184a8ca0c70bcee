"""ASGI entry point: `daphne shimsite.asgi:application` (and what `manage.py runserver` serves).

HTTP goes to Django (static files for the admin served first); WebSockets are routed by Channels.
The API paths (`settings.API_PATH_REGEX`) get a lean Django handler: only `settings.API_MIDDLEWARE`
(async-native) and no per-request thread pool. Django's stock stack adapts every sync middleware
method with `sync_to_async`, a thread hop each, about a dozen per request: most of the proxy's CPU.
"""
import os
import re
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shimsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402

from adminui.consumers import HistoryConsumer  # noqa: E402
from shimsite import server  # noqa: E402

from routing.registry import get_registry  # noqa: E402
from routing.routes import RouteTableError  # noqa: E402

try:  # refuse to start on a broken routes file, and say why in one line
    get_registry()
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


def keep_database_receivers_off_the_api():
    """Django's `request_started` receivers (`close_old_connections`, `reset_queries`) are sync, so
    each request the API handler starts would pay a thread hop for them, for database connections API
    views never use (the registry and the request log have their own). Keep them for the site's
    handler (admin, history), which is what they are for."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_started
    from django.db import close_old_connections, reset_queries

    for receiver in (close_old_connections, reset_queries):
        if request_started.disconnect(receiver):
            for sender in (ASGIHandler, WSGIHandler):
                request_started.connect(receiver, sender=sender)


keep_database_receivers_off_the_api()
server.install()  # head checked before the body is read, slow clients dropped (shimsite/server.py)


class SplitHTTP:
    """API paths to the lean handler, everything else (admin, history, static) to the full stack."""

    def __init__(self, api, site):
        self.api, self.site = api, site
        self.api_path = re.compile(settings.API_PATH_REGEX)

    async def __call__(self, scope, receive, send):
        app = self.api if self.api_path.match(scope["path"]) else self.site
        await app(scope, receive, send)


websocket_urlpatterns = [
    path("ws/history/", HistoryConsumer.as_asgi()),
]

application = ProtocolTypeRouter({
    "http": SplitHTTP(ApiHandler(), ASGIStaticFilesHandler(django_asgi_app)),
    # The host and the whole origin (scheme, host, port) are checked by the consumer.
    "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
})
