"""The admin's forms: they validate exactly like routes.yaml (the models' `clean` use the loader's
rules) and take durations for TTLs. The alias form offers LM Studio's live model list for the model id;
the defaults form says, beside each field, the routes.yaml value an empty field keeps."""
from __future__ import annotations

from django import forms
from django.utils.html import format_html, format_html_join

from routing.config.durations import format_duration, parse_duration, ttl_seconds
from routing.config.load_settings import FIELDS as LOAD_FIELDS
from routing.models import Alias, RouteDefaults
from routing.proxy.state import current

from . import lmstudio


class ModelIdInput(forms.TextInput):
    """A text input with a `<datalist>` of LM Studio's models: pick one, or type any id."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_ids: list[str] = []
        self.unavailable = ""

    def render(self, name, value, attrs=None, renderer=None):
        list_id = f"{name}-lmstudio-models"
        html = super().render(name, value, {**(attrs or {}), "list": list_id}, renderer)
        options = format_html_join("", '<option value="{}"></option>', ((m,) for m in self.model_ids))
        note = (format_html('<div class="help lmstudio-unavailable" style="color:#ba2121">{}</div>',
                            self.unavailable) if self.unavailable
                else format_html('<div class="help">{} models from LM Studio</div>', len(self.model_ids)))
        return format_html('{}<datalist id="{}">{}</datalist>{}', html, list_id, options, note)


def ttl_from_text(text: str, what: str) -> int | None:
    """A TTL typed as seconds or a Go duration, in seconds (empty: None), read like routes.yaml's."""
    if not text.strip():
        return None
    try:
        return ttl_seconds(parse_duration(text.strip()))
    except ValueError as exc:
        raise forms.ValidationError(f"{what}: bad 'ttl': {exc}") from None


class AliasForm(forms.ModelForm):
    ttl = forms.CharField(
        required=False, label="TTL",
        help_text="Idle TTL: seconds or a Go duration ('90s', '30m', '1h30m'); empty = routes.yaml's "
                  "defaults.ttl.")

    class Meta:
        model = Alias
        fields = ["name", "model", "enabled", "hidden", "description", "ttl", "temperature", "system",
                  "system_mode", "options", "messages", "license", "backends", "policy", "download",
                  *LOAD_FIELDS]
        widgets = {"model": ModelIdInput(attrs={"size": 60, "autocomplete": "off"}),
                   "system": forms.Textarea(attrs={"rows": 4, "cols": 80}),
                   "options": forms.Textarea(attrs={"rows": 3, "cols": 80}),
                   "messages": forms.Textarea(attrs={"rows": 4, "cols": 80}),
                   "license": forms.Textarea(attrs={"rows": 3, "cols": 80})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        widget = self.fields["model"].widget
        widget.model_ids, widget.unavailable = lmstudio.model_ids(current().registry.current_table())
        ttl = self.initial.get("ttl")
        if isinstance(ttl, int):
            self.initial["ttl"] = format_duration(ttl)

    def clean_ttl(self) -> int | None:
        name = self.cleaned_data.get("name") or self.data.get("name", "")
        return ttl_from_text(self.cleaned_data.get("ttl", ""), f"alias '{name}'")

    def clean_options(self):
        return self.cleaned_data.get("options") or {}

    def clean_messages(self):
        return self.cleaned_data.get("messages") or []


class PassthroughSelect(forms.NullBooleanSelect):
    """Yes / no / unset, where unset means "routes.yaml's value"."""

    def __init__(self, attrs=None):
        super().__init__(attrs)
        self.choices = [("unknown", "routes.yaml's"),
                        ("true", "on: other names go to LM Studio as they are"),
                        ("false", "off: names that are no alias are 404 (or the fallback)")]


class RouteDefaultsForm(forms.ModelForm):
    ttl = forms.CharField(required=False, label="TTL",
                          help_text="Seconds or a Go duration ('10m', '1h'); empty = routes.yaml's.")
    passthrough = forms.NullBooleanField(required=False, widget=PassthroughSelect)

    class Meta:
        model = RouteDefaults
        fields = ["fallback", "expose", "passthrough", "ttl"]
        widgets = {"fallback": forms.TextInput(attrs={"list": "effective-alias-names"})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        registry = current().registry
        file_defaults = registry.file_table().defaults
        for name, field in self.fields.items():
            value = getattr(file_defaults, name)
            shown = format_duration(value) if name == "ttl" and value else value
            field.help_text += format_html(
                ' <span class="file-value">routes.yaml: <code>{}</code></span>', "off" if shown is None else shown)
        self.fields["expose"].choices = [("", "routes.yaml's")] + self.fields["expose"].choices[1:]
        if isinstance(self.initial.get("ttl"), int):
            self.initial["ttl"] = format_duration(self.initial["ttl"])
        names = [a.name for a in registry.table_without_alias(None).aliases.values() if not a.is_pattern]
        options = format_html_join("", '<option value="{}"></option>', ((n,) for n in names))
        self.fields["fallback"].help_text += format_html('<datalist id="effective-alias-names">{}'
                                                         '</datalist>', options)

    def clean_ttl(self) -> int | None:
        return ttl_from_text(self.cleaned_data.get("ttl", ""), "defaults")
