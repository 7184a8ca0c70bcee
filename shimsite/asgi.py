"""ASGI entry point: `daphne shimsite.asgi:application` (and what `manage.py runserver` serves).

HTTP goes to Django (static files for the admin served first); WebSockets are routed by Channels.
With the fast path on (`shimsite.fast_path`, decided here, once), the API paths (`routing.core.paths`)
get a lean Django handler: only `settings.API_MIDDLEWARE` (async-native) and no per-request thread pool.
Otherwise every path takes Django's stock handler and the full MIDDLEWARE.
"""
import logging
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shimsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from adminui.consumers import HistoryConsumer  # noqa: E402
from shimsite import fast_path, server, shutdown  # noqa: E402
from shimsite.path_keys import PathKeys  # noqa: E402

from routing.config.loader import RouteTableError  # noqa: E402
from routing.proxy import state  # noqa: E402

log = logging.getLogger("routing.server")

# The application's state is made now, not in the first request (its clients to LM Studio too: that
# request was about 0.2 s slower; their connections are opened on first use, on the server's loop).
try:  # refuse to start on a broken routes file, and say why in one line
    state.current()
except RouteTableError as exc:
    sys.exit(f"error: {exc}")

# The private names the fast path needs are checked now: all there, it is installed; else (or with
# FAST_PATH off) none of it, and the log says so.
fast = fast_path.start(settings.FAST_PATH)
log.debug("open-file limit: %s", server.raise_open_file_limit())


websocket_urlpatterns = [
    path("ws/history/", HistoryConsumer.as_asgi()),
]

site = ASGIStaticFilesHandler(django_asgi_app)
application = shutdown.install(ProtocolTypeRouter({
    # A key in the path (/k/<key>/...) is taken off first: nothing after sees it (shimsite.path_keys).
    "http": PathKeys(fast_path.SplitHTTP(fast_path.ApiHandler(), site) if fast else site),
    # The host and the whole origin (scheme, host, port) are checked by the consumer.
    "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
}), state.current(), settings.SHUTDOWN_GRACE)  # SIGTERM and SIGINT drain what is in flight
server.tune_gc()  # everything is imported and built: keep it out of the collector's way
