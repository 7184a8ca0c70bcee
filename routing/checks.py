"""`manage.py check` (and so `runserver`) validates routes.yaml and refuses to start on a broken one;
it also warns about rows of the admin's store that no longer validate against the effective table."""
from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ValidationError
from django.db import DatabaseError

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


@register()
def check_admin_store(app_configs=None, **kwargs):
    """Admin rows the proxy skips or that a routes.yaml edit broke (a pattern now tying with one of the
    file's, a fallback naming an alias that is gone): warnings, since the proxy still serves."""
    try:
        problems = admin_store_problems()
    except DatabaseError:  # not migrated yet (`migrate` runs the checks before creating the tables)
        return []
    return [Warning(problem, hint="Fix it in the admin (Routing).", id="routing.W001")
            for problem in problems]


def admin_store_problems() -> list[str]:
    """Each enabled admin row that fails the validation the admin applies when saving."""
    from .models import Alias, DeclaredEndpoint, RouteDefaults

    rows = [*Alias.objects.filter(enabled=True), *DeclaredEndpoint.objects.filter(enabled=True),
            RouteDefaults.load()]
    problems = []
    for row in rows:
        try:
            row.full_clean()
        except ValidationError as exc:
            problems.append(f"admin {_label(row)}: {'; '.join(exc.messages)}")
    return problems


def _label(row) -> str:
    if hasattr(row, "name"):
        return f"alias '{row.name}'"
    return f"endpoint {row.method} {row.path}" if hasattr(row, "path") else "defaults"
