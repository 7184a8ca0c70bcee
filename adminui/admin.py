"""The admin: aliases, defaults and declared endpoints (the admin's store merged over routes.yaml), with
export and "test this alias"."""
from __future__ import annotations

from django.contrib import admin, messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from routing.config.durations import format_duration
from routing.config.load_settings import FIELDS as LOAD_FIELDS
from routing.config.registry import defaults_sources, endpoint_source, source_of
from routing.config.table import normalize_name
from routing.core.errors import ProxyError
from routing.models import Alias, Backend, DeclaredEndpoint, RouteDefaults
from routing.proxy.state import current

from . import lmstudio
from .forms import AliasForm, RouteDefaultsForm

admin.site.site_header = "LM Studio alias proxy"
admin.site.site_title = "Alias proxy admin"
admin.site.index_title = "Aliases and request history"


class SourceFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return [("admin", "admin only"), ("override", "overrides routes.yaml")]

    def queryset(self, request, queryset):
        file_names = list(current().registry.file_table().aliases)
        if self.value() == "admin":
            return queryset.exclude(name__in=file_names)
        if self.value() == "override":
            return queryset.filter(name__in=file_names)
        return queryset


@admin.register(Alias)
class AliasAdmin(admin.ModelAdmin):
    form = AliasForm
    list_display = ("name", "model", "source", "enabled", "pattern", "hidden", "temperature",
                    "ttl_display", "updated_at", "test_link")
    list_display_links = ("name",)
    list_filter = ("enabled", SourceFilter, "hidden", "system_mode")
    search_fields = ("name", "model", "description", "system")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = [
        (None, {"fields": ["name", "model", "enabled", "hidden", "description"]}),
        ("Overrides sent to LM Studio", {"fields": ["ttl", "temperature", "system", "system_mode",
                                                    "options", "messages"]}),
        ("Shown, never sent", {"fields": ["license"], "classes": ["collapse"]}),
        ("LM Studio servers", {"fields": ["backends", "policy"]}),
        ("Download (ollama pull)", {"fields": ["download"]}),
        ("How LM Studio loads the model", {"fields": list(LOAD_FIELDS), "description": (
            "Set any of these and the proxy serves the alias from an instance loaded with exactly them "
            "(LM Studio 0.4+), loading one before the first request; empty = routes.yaml's defaults, "
            "else LM Studio loads the model on demand with its own settings.")}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    @admin.display(description="source")
    def source(self, obj: Alias) -> str:
        overrides = normalize_name(obj.name) in current().registry.file_table().aliases
        return "admin override of routes.yaml" if overrides else "admin"

    @admin.display(description="pattern", boolean=True)
    def pattern(self, obj: Alias) -> bool:
        return obj.is_pattern

    @admin.display(description="TTL", ordering="ttl")
    def ttl_display(self, obj: Alias) -> str:
        return format_duration(obj.ttl) if obj.ttl else "—"

    @admin.display(description="test")
    def test_link(self, obj: Alias) -> str:
        return format_html('<a href="{}">test</a>', reverse("admin:routing_alias_test", args=[obj.name]))

    def get_urls(self):
        own = [path("export/", self.admin_site.admin_view(self.export_view), name="routing_alias_export"),
               path("test/<path:name>/", self.admin_site.admin_view(self.test_view),
                    name="routing_alias_test")]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        registry = current().registry
        table, file_table = registry.current_table(), registry.file_table()
        stored = dict(Alias.objects.values_list("name", "pk"))
        effective = [{"alias": a, "source": source_of(a, file_table), "pk": stored.get(a.name)}
                     for a in table.aliases.values()]
        context = {"effective": effective, "defaults": table.defaults, "routes_path": registry.path,
                   **(extra_context or {})}
        return super().changelist_view(request, context)

    def get_changeform_initial_data(self, request):
        """`?override=<name>` prefills the form with routes.yaml's alias of that name."""
        name = request.GET.get("override")
        if not name:
            return super().get_changeform_initial_data(request)
        alias = current().registry.file_table().aliases.get(normalize_name(name))
        if alias is None:
            messages.warning(request, f"routes.yaml has no alias '{name}' to override.")
            return {"name": name}
        stored = Alias(name=alias.name, description=f"overrides {current().registry.path.name}")
        stored.copy_settings(alias)
        return {field: getattr(stored, field) for field in AliasForm.Meta.fields}

    def add_view(self, request, form_url="", extra_context=None):
        name = request.GET.get("override")
        existing = name and Alias.objects.filter(name=normalize_name(name)).first()
        if existing:  # an override already exists: edit it rather than fail on a duplicate name
            return redirect("admin:routing_alias_change", existing.pk)
        return super().add_view(request, form_url, extra_context)

    def export_view(self, request):
        text = current().registry.export_yaml()
        if request.GET.get("download"):
            response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="routes.yaml"'
            return response
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Export the effective route table", "yaml": text}
        return TemplateResponse(request, "admin/routing/alias/export.html", context)

    def test_view(self, request, name: str):
        table = current().registry.current_table()
        route = table.resolve(name)
        if route is None or route.alias is None:
            raise Http404(f"no alias '{name}'")
        try:
            backend = current().pool.first(table, route)
        except ProxyError as exc:  # an admin alias naming a backend that is gone
            backend, result = None, lmstudio.TestResult({}, error=exc.message)
        else:
            result = lmstudio.try_route(route, table.defaults, backend.upstream)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"Test alias '{route.alias.name}'", "route": route, "result": result,
                   "backend": backend.name if backend else "",
                   "source": source_of(route.alias, current().registry.file_table())}
        return TemplateResponse(request, "admin/routing/alias/test_alias.html", context)


@admin.register(RouteDefaults)
class RouteDefaultsAdmin(admin.ModelAdmin):
    """One row: the list opens it; each empty field keeps routes.yaml's value."""

    form = RouteDefaultsForm
    fieldsets = [(None, {"fields": ["fallback", "expose", "passthrough", "ttl"],
                         "description": "Set a field to override routes.yaml's <code>defaults:</code>; "
                                        "leave it empty to keep the file's value."})]

    def has_add_permission(self, request):
        return False

    def changelist_view(self, request, extra_context=None):
        if not RouteDefaults.objects.exists():  # the row exists from the first visit (empty: the file's)
            RouteDefaults().save()
        return redirect("admin:routing_routedefaults_change", 1)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        table = current().registry.current_table()
        sources = defaults_sources(RouteDefaults.load().overrides())
        effective = [(name, getattr(table.defaults, name), source) for name, source in sources.items()]
        context = {"effective_defaults": effective, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    def response_change(self, request, obj):
        # The list is this one form: stay on it, showing the effective defaults just saved.
        self.message_user(request, "The defaults were saved; the proxy uses them from the next request.",
                          messages.SUCCESS)
        return redirect("admin:routing_routedefaults_change", obj.pk)


@admin.register(Backend)
class BackendAdmin(admin.ModelAdmin):
    """LM Studio servers stored in the admin, merged over routes.yaml's `backends:` (/ready shows each
    one's health)."""

    list_display = ("name", "url", "enabled", "source", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("name", "url", "description")
    readonly_fields = ("created_at", "updated_at")
    fields = ["name", "url", "api_key", "enabled", "description", "created_at", "updated_at"]

    @admin.display(description="source")
    def source(self, obj: Backend) -> str:
        overrides = obj.name in current().registry.file_table().backends
        return "admin override of routes.yaml" if overrides else "admin"


@admin.register(DeclaredEndpoint)
class DeclaredEndpointAdmin(admin.ModelAdmin):
    list_display = ("path", "method", "status", "enabled", "source", "updated_at")
    list_display_links = ("path",)
    list_filter = ("enabled", "method")
    search_fields = ("path", "description")
    readonly_fields = ("created_at", "updated_at")
    fields = ["method", "path", "status", "body", "enabled", "description", "created_at", "updated_at"]

    @admin.display(description="source")
    def source(self, obj: DeclaredEndpoint) -> str:
        overrides = (obj.method, obj.path) in {e.key for e in current().registry.file_table().endpoints}
        return "admin override of routes.yaml" if overrides else "admin"

    def changelist_view(self, request, extra_context=None):
        registry = current().registry
        table, file_table = registry.current_table(), registry.file_table()
        rows = DeclaredEndpoint.objects.values_list("method", "path", "pk")
        stored = {(method, endpoint_path): pk for method, endpoint_path, pk in rows}
        effective = [{"endpoint": e, "source": endpoint_source(e, file_table), "pk": stored.get(e.key)}
                     for e in table.endpoints]
        context = {"effective": effective, "routes_path": registry.path, **(extra_context or {})}
        return super().changelist_view(request, context)

    def get_changeform_initial_data(self, request):
        """`?override=METHOD /path` prefills the form with routes.yaml's declaration."""
        method, _, endpoint_path = request.GET.get("override", "").partition(" ")
        declared = current().registry.file_table().endpoint(method, endpoint_path)
        if declared is None:
            return super().get_changeform_initial_data(request)
        return {"method": declared.method, "path": declared.path, "status": declared.status,
                "body": declared.body, "description": f"overrides {current().registry.path.name}"}
