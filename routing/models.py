"""Aliases stored through the admin. They are merged over routes.yaml by `routing.registry`.

Validation is the YAML loader's own (`routing.routes.alias_fields` and the duration parser), so an
alias saved here is exactly as valid as one read from the file, and errors read the same way.
"""
from __future__ import annotations


from django.core.exceptions import ValidationError
from django.db import models

from . import routes

SYSTEM_MODE_CHOICES = [(mode, mode) for mode in routes.SYSTEM_MODES]


class Alias(models.Model):
    name = models.CharField(
        max_length=200, unique=True,
        help_text="The name clients ask for (Ollama style). 'coder' and 'coder:latest' are the same "
                  "alias; ':latest' is dropped when saved. Same name as a routes.yaml alias = override.")
    model = models.CharField(max_length=300, help_text="The LM Studio model id requests are sent to.")
    ttl = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Idle TTL in seconds LM Studio keeps the model loaded when this alias loads it; "
                  "empty = routes.yaml's defaults.ttl.")
    temperature = models.FloatField(
        null=True, blank=True, help_text="Replaces the client's temperature (0 to 2); empty = the client's.")
    system = models.TextField(blank=True, default="",
                              help_text="System prompt applied according to the system mode; empty = none.")
    system_mode = models.CharField(
        max_length=10, choices=SYSTEM_MODE_CHOICES, default="prepend",
        help_text="prepend: before the client's messages; replace: drop the client's system messages; "
                  "default: only when the client sent none.")
    options = models.JSONField(
        default=dict, blank=True,
        help_text='Other Ollama options as JSON, e.g. {"top_p": 0.9, "num_predict": 256}; they replace '
                  "the client's values.")
    hidden = models.BooleanField(
        default=False, help_text="Served, but left out of the model lists (/api/tags, /v1/models), like "
                                 "routes.yaml's 'hidden'.")
    enabled = models.BooleanField(default=True, help_text="Disabled aliases are not served; a disabled "
                                  "override lets routes.yaml's alias of the same name serve again.")
    description = models.CharField(max_length=500, blank=True, help_text="A note for people; not sent.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "aliases"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(temperature__isnull=True)
                | models.Q(temperature__gte=0, temperature__lte=2),
                name="alias_temperature_0_to_2"),
            models.CheckConstraint(condition=models.Q(ttl__isnull=True) | models.Q(ttl__gte=1),
                                   name="alias_ttl_at_least_1s"),
            models.CheckConstraint(condition=models.Q(system_mode__in=routes.SYSTEM_MODES),
                                   name="alias_system_mode_known"),
        ]

    def __str__(self):
        return f"{self.name} → {self.model}"

    def save(self, *args, **kwargs):
        self.name = routes.normalize_name(self.name)
        super().save(*args, **kwargs)

    def clean(self):
        """Normalise the name and validate like the YAML loader (before the uniqueness check)."""
        self.name = routes.normalize_name(self.name or "")
        self.model = (self.model or "").strip()
        errors = {}
        if not self.name:
            errors["name"] = "alias names must not be empty"
        if not self.model:
            errors["model"] = f"alias '{self.name}': 'model' (the LM Studio model id) is required"
        try:
            routes.alias_fields(self._fields_data(), "admin", {}, f"alias '{self.name}'")
        except routes.RouteTableError as exc:
            errors[exc.key or "__all__"] = exc.message
        if errors:
            raise ValidationError(errors)

    def _fields_data(self) -> dict:
        return {"temperature": self.temperature, "system": self.system or None,
                "system_mode": self.system_mode, "options": self.options, "hidden": self.hidden}

    def to_route_alias(self) -> routes.Alias:
        """The frozen `routing.routes.Alias` the route table uses."""
        fields = routes.alias_fields(self._fields_data(), "admin", {}, f"alias '{self.name}'")
        return routes.Alias(name=routes.normalize_name(self.name), model=self.model, ttl=self.ttl,
                            source="admin", **fields)

    def copy_settings(self, alias: routes.Alias):
        """Take a table alias's routing settings (an override, an import, a copy); name and notes stay."""
        self.model, self.ttl, self.temperature = alias.model, alias.ttl, alias.temperature
        self.system, self.system_mode = alias.system or "", alias.system_mode
        self.options = dict(alias.options)
        self.hidden = getattr(alias, "hidden", False)  # a table alias without `hidden` is listed
