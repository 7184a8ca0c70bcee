"""`manage.py check` (and so `runserver`) validates routes.yaml and refuses to start on a broken one."""
from django.conf import settings
from django.core.checks import Error, register

from .registry import read_routes_file
from .routes import RouteTableError


@register()
def check_routes_file(app_configs=None, **kwargs):
    try:
        read_routes_file(settings.ROUTES_FILE)
    except RouteTableError as exc:
        return [Error(str(exc), hint=f"Fix {settings.ROUTES_FILE} (see the README's routes.yaml "
                      "reference).", id="routing.E001")]
    return []
