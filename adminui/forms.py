"""The admin's alias form: validates exactly like routes.yaml (the model's `clean` uses the loader's
rules), takes durations for the TTL, and offers LM Studio's live model list for the model id."""
from __future__ import annotations

from django import forms
from django.utils.html import format_html, format_html_join

from routing.durations import format_duration, parse_duration, ttl_seconds
from routing.models import Alias

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


class AliasForm(forms.ModelForm):
    ttl = forms.CharField(
        required=False, label="TTL",
        help_text="Idle TTL: seconds or a Go duration ('90s', '30m', '1h30m'); empty = routes.yaml's "
                  "defaults.ttl.")

    class Meta:
        model = Alias
        fields = ["name", "model", "enabled", "hidden", "description", "ttl", "temperature", "system",
                  "system_mode", "options"]
        widgets = {"model": ModelIdInput(attrs={"size": 60, "autocomplete": "off"}),
                   "system": forms.Textarea(attrs={"rows": 4, "cols": 80}),
                   "options": forms.Textarea(attrs={"rows": 3, "cols": 80})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        widget = self.fields["model"].widget
        widget.model_ids, widget.unavailable = lmstudio.model_ids()
        ttl = self.initial.get("ttl")
        if isinstance(ttl, int):
            self.initial["ttl"] = format_duration(ttl)

    def clean_ttl(self) -> int | None:
        text = self.cleaned_data.get("ttl", "").strip()
        if not text:
            return None
        try:
            return ttl_seconds(parse_duration(text))
        except ValueError as exc:
            name = self.cleaned_data.get("name") or self.data.get("name", "")
            raise forms.ValidationError(f"alias '{name}': bad 'ttl': {exc}") from None

    def clean_options(self):
        return self.cleaned_data.get("options") or {}
