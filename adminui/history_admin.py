"""The request log in the admin (read-only), and the admin's links to the request history.

Imported by `AdminUIConfig.ready` (kept apart from `admin.py`, which holds the route-table admin).
"""
from django.contrib import admin

from .models import RequestLog

admin.site.site_url = "/history/"  # the header's "View site" link goes to the request history


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    """Read-only: the request log is written by the proxy alone."""

    list_display = ("started_at", "endpoint", "requested_model", "upstream_model", "backend", "status",
                    "outcome", "duration_ms", "completion_tokens")
    list_filter = ("api", "status", "alias", "backend", "stream")
    search_fields = ("request_id", "requested_model", "upstream_model")
    date_hierarchy = "started_at"
    show_full_result_count = False  # no COUNT(*) over a large table

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def view_on_site(self, obj):
        return f"/history/{obj.request_id}/"
