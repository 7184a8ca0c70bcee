"""`manage.py check` (and so `runserver`) validates routes.yaml and refuses to start on a broken one,
and warns about rows of the admin's store that no longer validate against the effective table. None of
this asks LM Studio anything: whether an LM Studio backend can apply the load settings (its /api/v1) is
asked only with `manage.py check --deploy --tag lmstudio` (or `--deploy`)."""
import httpx
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ValidationError
from django.db import DatabaseError

from routing.config import load_settings
from routing.config.loader import RouteTableError
from routing.config.registry import read_admin_overrides, read_routes_file
from routing.config.table import Route, RouteBackend
from routing.core.errors import EndpointMissing, ProxyError
from routing.lmstudio.backends import BackendPool
from routing.lmstudio.client import NATIVE_MODELS, check_response
from routing.models import Alias, DeclaredEndpoint, RouteDefaults
from routing.proxy.state import current
from routing.security.clients import networks


@register()
def check_routes_file(app_configs=None, **kwargs):
    try:
        read_routes_file(settings.ROUTES_FILE)
    except RouteTableError as exc:
        return [Error(str(exc), hint=f"Fix {settings.ROUTES_FILE} (see docs/routes-yaml.md).", id="routing.E001")]
    return []


@register()
def check_trusted_proxies(app_configs=None, **kwargs):
    try:
        networks(tuple(settings.TRUSTED_PROXIES))
    except ValueError as exc:
        return [Error(f"TRUSTED_PROXIES: {exc}", hint="List CIDRs or addresses, comma-separated "
                      "(e.g. 10.0.0.0/8,127.0.0.1).", id="routing.E002")]
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


LMSTUDIO = "lmstudio"  # the tag of the checks that ask LM Studio


@register(LMSTUDIO, deploy=True)
def check_load_settings(app_configs=None, **kwargs):
    """Load settings need LM Studio 0.4's /api/v1: on a backend without it they do not apply (requests
    are loaded by LM Studio's JIT default, with a warning in the log). Asked only when some alias or
    the defaults have load settings."""
    try:
        return [Warning(problem, hint="Update LM Studio to 0.4 or later, or drop the load settings.",
                        id="routing.W002") for problem in async_to_sync(load_settings_problems)()]
    except RouteTableError:  # a broken routes.yaml is check_routes_file's error
        return []


async def load_settings_problems() -> list[str]:
    """For each backend serving aliases with load settings: whether they apply there."""
    table = read_routes_file(settings.ROUTES_FILE)
    try:
        table = table.merged_with(await sync_to_async(read_admin_overrides)())
    except DatabaseError:  # not migrated yet: the file's aliases alone
        pass
    users: dict[str, list[str]] = {}
    for alias in [*table.aliases.values(), None]:  # None: pass-through names, by the defaults
        if load_settings.effective(alias, table.defaults)[0]:
            route = Route("", "", alias)
            for name in route.backends(table.defaults)[0]:
                users.setdefault(name, []).append(alias.name if alias else "defaults")
    pool = current().pool.matched(table.backends)
    return [problem for name, aliases in users.items()
            if name in pool.states and (problem := await _native_api_problem(pool, pool.states[name].backend,
                                                                              aliases))]


async def _native_api_problem(pool: BackendPool, backend: RouteBackend, aliases: list[str]) -> str | None:
    """Why the load settings of `aliases` do not apply on `backend`, or None when they do. Asked with a
    client of its own, closed before this check's event loop ends."""
    upstream = pool.make_upstream(backend)
    what = (f"load settings of {', '.join(repr(a) for a in aliases)} on backend '{backend.name}' "
            f"({upstream.display_url})")
    try:
        check_response(await upstream.read("GET", NATIVE_MODELS, timeout=httpx.Timeout(settings.READY_TIMEOUT)))
    except EndpointMissing:
        return (f"{what}: not applicable, this LM Studio has no /api/v1 (LM Studio 0.4+); requests "
                f"are loaded by its JIT default instead")
    except ProxyError as exc:
        return f"{what}: could not be checked, LM Studio did not answer /api/v1/models ({exc.message})"
    finally:
        await upstream.aclose()
    return None
