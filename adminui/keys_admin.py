"""The admin's API keys (Routing → API keys): a new key is shown once, on the page after saving, and
never again; only its hash and prefix are stored."""
from __future__ import annotations

from django.contrib import admin, messages

from routing.models import ApiKey
from routing.security.keys import new_key


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "scope", "max_concurrent", "requests_per_minute", "tokens_per_day",
                    "expires_at", "last_used_at", "enabled")
    list_filter = ("enabled",)
    search_fields = ("name", "prefix", "aliases")
    readonly_fields = ("prefix", "last_used_at", "created_at", "updated_at")
    fields = ["name", "enabled", "aliases", "max_concurrent", "requests_per_minute", "tokens_per_day",
              "expires_at", "prefix", "last_used_at", "created_at", "updated_at"]

    def save_model(self, request, obj: ApiKey, form, change):
        key = None
        if not change:
            key = new_key()
            obj.set_key(key)
        super().save_model(request, obj, form, change)
        if key is not None:
            # Messages live in the session only until the next page shows them (it is this one's).
            messages.warning(request, f"The key for {obj.name}, shown this once (only its hash is kept): {key}")
