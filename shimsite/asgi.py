"""ASGI entry point: `daphne shimsite.asgi:application` (and what `manage.py runserver` serves).

HTTP goes to Django (static files for the admin served first); WebSockets are routed by Channels.
"""
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shimsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from adminui.consumers import HistoryConsumer  # noqa: E402

from routing.registry import get_registry  # noqa: E402
from routing.routes import RouteTableError  # noqa: E402

try:  # refuse to start on a broken routes file, and say why in one line
    get_registry()
except RouteTableError as exc:
    sys.exit(f"error: {exc}")

websocket_urlpatterns = [
    path("ws/history/", HistoryConsumer.as_asgi()),
]

application = ProtocolTypeRouter({
    "http": ASGIStaticFilesHandler(django_asgi_app),
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
