"""What the admin stores over routes.yaml: aliases, the defaults it overrides, declared endpoints; and the
API keys (`ApiKey`).
`routing.config.registry` merges them over the file (`RouteTable.merged_with`).

Validation is the YAML loader's own (`routing.config.loader.alias_fields`, `defaults_fields`,
`check_fallback`, `tied_pattern`, `endpoint_fields`), so a row saved here is exactly as valid as the
same thing read from the file, and errors read the same way. Rules that span the table (pattern ties,
the fallback) are checked against the effective table: routes.yaml and every other admin row.
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from routing.config import loader, table
from routing.config.load_settings import FIELDS as LOAD_FIELDS
from routing.config.registry import source_of
from routing.config.table import DEFAULT_BACKEND
from routing.config.table import RouteBackend as BackendConfig
from routing.proxy import state
from routing.security.keys import key_hash, parse_scope, visible_prefix

SYSTEM_MODE_CHOICES = [(mode, mode) for mode in loader.SYSTEM_MODES]
POLICY_CHOICES = [(policy, policy) for policy in table.POLICIES]


class StoredRow(models.Model):
    """What every row of the admin's store has: a note, and the timestamps the registry's cross-process
    refresh watches (`max(updated_at)`)."""

    description = models.CharField(max_length=500, blank=True, help_text="A note for people; not sent.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        abstract = True


class Alias(StoredRow):
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
    backends = models.CharField(
        max_length=500, blank=True, default="",
        help_text="LM Studio backends (names from routes.yaml's backends:, or 'default' for LMSTUDIO_URL), "
                  "comma-separated, in order; empty = routes.yaml's defaults.backends, else 'default'.")
    policy = models.CharField(
        max_length=10, choices=POLICY_CHOICES, default="fallback", blank=True,
        help_text="fallback: the next backend when one is down or answers 5xx; least-busy: the backend "
                  "with the fewest open requests.")
    download = models.CharField(
        max_length=500, blank=True, default="",
        help_text="Where `ollama pull` downloads the model from when LM Studio lacks it: a catalog id "
                  "(google/gemma-3-1b) or a Hugging Face repo with its quantization "
                  "(hf.co/user/repo:Q4_K_M); empty = the model id, tried as a catalog id.")
    messages = models.JSONField(
        default=list, blank=True,
        help_text='A conversation put before the client\'s messages (after the system prompt), as JSON: '
                  '[{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]; roles '
                  "system, user, assistant (Ollama's MESSAGE).")
    license = models.TextField(blank=True, default="",
                               help_text="The model's license text, shown by /api/show; never sent.")
    enabled = models.BooleanField(default=True, help_text="Disabled aliases are not served; a disabled "
                                  "override lets routes.yaml's alias of the same name serve again.")
    # How LM Studio loads the model (routing.config.load_settings); empty: routes.yaml's defaults, else JIT.
    context_length = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens of context the model is loaded with (e.g. 65536); the "
                                         "proxy loads an instance with it before the first request.")
    eval_batch_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Input tokens processed together (llama.cpp models).")
    num_experts = models.PositiveIntegerField(null=True, blank=True,
                                              help_text="Experts used by a mixture-of-experts model.")
    flash_attention = models.BooleanField(null=True, blank=True,
                                          help_text="Load with flash attention (llama.cpp models).")
    offload_kv_cache_to_gpu = models.BooleanField(
        null=True, blank=True, help_text="Keep the KV cache in GPU memory (llama.cpp models).")
    num_ctx_max = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="num_ctx maximum",
        help_text="Honour an Ollama client's options.num_ctx up to this many tokens (an instance is "
                  "loaded with it); empty = num_ctx is ignored.")

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
            models.CheckConstraint(condition=models.Q(system_mode__in=loader.SYSTEM_MODES),
                                   name="alias_system_mode_known"),
        ]

    def __str__(self):
        return f"{self.name} → {self.model}"

    def save(self, *args, **kwargs):
        self.name = table.normalize_name(self.name)
        super().save(*args, **kwargs)

    def clean(self):
        """Normalise the name and validate like the YAML loader (before the uniqueness check)."""
        self.name = table.normalize_name(self.name or "")
        self.model = (self.model or "").strip()
        errors = {}
        if not self.name:
            errors["name"] = "alias names must not be empty"
        if not self.model:
            errors["model"] = f"alias '{self.name}': 'model' (the LM Studio model id) is required"
        try:
            fields = loader.alias_fields(self._fields_data(), "admin", {}, f"alias '{self.name}'")
            loader.check_backend_names(fields["backends"], self._known_backends(), f"alias '{self.name}'",
                                       "admin")
            self.download = fields["download"].text if fields["download"] else ""  # as export writes it
        except loader.RouteTableError as exc:
            errors[exc.key or "__all__"] = exc.message
        if not errors and self.enabled and self.is_pattern:
            tie = self._tied_pattern()
            if tie:
                errors["name"] = tie
        if errors:
            raise ValidationError(errors)

    @property
    def is_pattern(self) -> bool:
        return any(c in (self.name or "") for c in table.GLOB_CHARS)

    @property
    def backend_names(self) -> list[str]:
        return [name.strip() for name in (self.backends or "").split(",") if name.strip()]

    @staticmethod
    def _known_backends():
        return state.current().registry.table_without_alias(None).backends

    def _tied_pattern(self) -> str | None:
        """The message naming the effective pattern (file or admin) this one would tie with."""
        registry = state.current().registry
        others = registry.table_without_alias(self.pk).aliases.values()
        alias = table.RouteAlias(name=self.name, model=self.model)
        other = loader.tied_pattern(alias, others)
        if other is None:
            return None
        where = "routes.yaml" if source_of(other, registry.file_table()) == "file" else "the admin"
        return loader.pattern_tie_message(alias, f"'{other.name}' (in {where})")

    def _fields_data(self) -> dict:
        return {"temperature": self.temperature, "system": self.system or None,
                "system_mode": self.system_mode, "options": self.options, "hidden": self.hidden,
                "backends": self.backend_names, "policy": self.policy, "download": self.download.strip(),
                "messages": self.messages, "license": self.license or None,
                **{key: getattr(self, key) for key in LOAD_FIELDS}}

    def to_route_alias(self) -> table.RouteAlias:
        """The frozen `routing.config.loader.RouteAlias` the route table uses."""
        fields = loader.alias_fields(self._fields_data(), "admin", {}, f"alias '{self.name}'")
        return table.RouteAlias(name=table.normalize_name(self.name), model=self.model, ttl=self.ttl,
                            source="admin", **fields)

    def copy_settings(self, alias: table.RouteAlias):
        """Take a table alias's routing settings (an override, an import, a copy); name and notes stay."""
        self.model, self.ttl, self.temperature = alias.model, alias.ttl, alias.temperature
        self.system, self.system_mode = alias.system or "", alias.system_mode
        self.options = dict(alias.options)
        self.hidden = getattr(alias, "hidden", False)  # a table alias without `hidden` is listed
        self.backends, self.policy = ", ".join(alias.backends), alias.policy
        self.download = alias.download.text if getattr(alias, "download", None) else ""
        self.messages = [m.to_yaml() for m in getattr(alias, "messages", ())]
        self.license = getattr(alias, "license", None) or ""
        for key in LOAD_FIELDS:
            setattr(self, key, getattr(alias, key, None))


EXPOSE_CHOICES = [(mode, mode) for mode in loader.EXPOSE_MODES]


class RouteDefaults(models.Model):
    """The admin's override of routes.yaml's `defaults:` (one row). An empty field keeps the file's."""

    ttl = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Idle TTL in seconds for aliases without their own; empty = routes.yaml's.")
    passthrough = models.BooleanField(
        null=True, blank=True,
        help_text="Whether names that are no alias go to LM Studio unchanged; empty = routes.yaml's.")
    fallback = models.CharField(
        max_length=200, blank=True,
        help_text="The alias that serves unknown model names (instead of a 404); empty = routes.yaml's.")
    expose = models.CharField(
        max_length=10, blank=True, choices=EXPOSE_CHOICES,
        help_text="What /api/tags, /v1/models and /api/ps list: all (aliases and LM Studio's models), "
                  "aliases, or none; empty = routes.yaml's.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "defaults"

    def __str__(self):
        return "Defaults (over routes.yaml)"

    def save(self, *args, **kwargs):
        self.pk = 1  # one row: saving always updates it
        self.fallback = table.normalize_name(self.fallback or "")
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> RouteDefaults:
        """The stored overrides, or an empty (unsaved) row when none were ever saved."""
        return cls.objects.filter(pk=1).first() or cls(pk=1)

    def overrides(self) -> dict:
        """The defaults this row sets, validated like routes.yaml's (field name -> value)."""
        data = {"passthrough": self.passthrough, "expose": self.expose or None,
                "fallback": self.fallback or None}
        data = {key: value for key, value in data.items() if value is not None}
        fields = loader.defaults_fields(data, "admin", {})
        out = {key: fields[key] for key in data}
        return out if self.ttl is None else {**out, "ttl": self.ttl}

    def clean(self):
        """Validate like the loader; the fallback must be a concrete alias of the effective table."""
        self.fallback = table.normalize_name(self.fallback or "")
        try:
            self.overrides()
            if self.fallback:
                loader.check_fallback(self.fallback, state.current().registry.table_without_alias(None).aliases,
                                      "an enabled alias that is no pattern (routes.yaml's or the "
                                      "admin's)", "admin")
        except loader.RouteTableError as exc:
            raise ValidationError({exc.key or "__all__": exc.message}) from None


METHOD_CHOICES = [(method, method) for method in loader.HTTP_METHODS]


class DeclaredEndpoint(StoredRow):
    """A path answered with a fixed JSON body, stored in the admin; one with the method and path of a
    routes.yaml endpoint replaces it."""

    method = models.CharField(max_length=7, choices=METHOD_CHOICES, default="GET",
                              help_text="HEAD is also answered by a GET declaration.")
    path = models.CharField(
        max_length=500, help_text="The exact path, starting with '/'. The proxy's own paths (/api/chat, "
                                  "/v1/…, /admin…) cannot be declared.")
    status = models.PositiveSmallIntegerField(
        default=200, validators=[MinValueValidator(200), MaxValueValidator(599)],
        help_text="The HTTP status answered (200 to 599).")
    body = models.JSONField(null=True, blank=True, verbose_name="JSON body",
                            help_text="The JSON answered, e.g. {\"features\": [\"chat\"]}; empty = "
                                      "no body.")
    enabled = models.BooleanField(default=True, help_text="Disabled endpoints are not answered; a "
                                  "disabled override lets routes.yaml's declaration answer again.")

    class Meta:
        ordering = ["path", "method"]
        constraints = [models.UniqueConstraint(fields=["method", "path"],
                                               name="endpoint_method_path_unique")]

    def __str__(self):
        return f"{self.method} {self.path} → {self.status}"

    def clean_fields(self, exclude=None):
        self.method = (self.method or "").upper()  # `get` is GET, as in routes.yaml
        super().clean_fields(exclude)

    def clean(self):
        """Validate like routes.yaml's `endpoints:` (reserved paths, methods, statuses)."""
        try:
            self.to_route_endpoint()
        except loader.RouteTableError as exc:
            raise ValidationError({exc.key or "__all__": exc.message}) from None

    def to_route_endpoint(self) -> table.RouteEndpoint:
        """The frozen `routing.config.table.RouteEndpoint` the route table uses."""
        data = {"method": self.method, "path": self.path, "status": self.status, "json": self.body}
        return loader.endpoint_fields(data, "admin", origin="admin")


class Backend(StoredRow):
    """An LM Studio server stored in the admin, beside routes.yaml's `backends:`; one with the name of
    a routes.yaml backend replaces it."""

    name = models.CharField(
        max_length=100, unique=True,
        help_text="The name aliases use in their backends. 'default' is LMSTUDIO_URL's and is taken.")
    url = models.CharField(max_length=500, help_text="LM Studio's server, without /v1, e.g. "
                                                     "http://10.0.0.5:1234.")
    api_key = models.CharField(max_length=500, blank=True, default="",
                               help_text="Sent as Authorization: Bearer, if this LM Studio requires one.")
    enabled = models.BooleanField(default=True, help_text="A disabled backend is not used; a disabled "
                                  "override lets routes.yaml's backend of the same name serve again.")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} → {self.url}"

    def clean(self):
        """Validate like routes.yaml's `backends:` (an http(s) URL; not the name `default`)."""
        self.name = (self.name or "").strip()
        if self.name == DEFAULT_BACKEND:
            raise ValidationError({"name": f"backend '{self.name}': the name is taken by LMSTUDIO_URL's "
                                           f"backend"})
        try:
            self.to_route_backend()
        except loader.RouteTableError as exc:
            raise ValidationError({exc.key or "__all__": exc.message}) from None

    def to_route_backend(self) -> BackendConfig:
        """The frozen `routing.lmstudio.backends.Backend` the route table uses."""
        return loader.backend_fields(self.name, {"url": self.url, "api_key": self.api_key}, "admin", {})


class ApiKey(models.Model):
    """A person's key to the API (`routing.security.keys`): only its SHA-256 and a visible prefix are
    stored, never the key. Made with `manage.py keys create` or in the admin, which show it once."""

    name = models.CharField(max_length=100, unique=True,
                            help_text="Who holds it; shown in the history as the request's key.")
    prefix = models.CharField(max_length=20, editable=False,
                              help_text="The key's first characters, to recognise it (not enough to use it).")
    key_hash = models.CharField(max_length=64, unique=True, editable=False,
                                help_text="SHA-256 of the key, hex.")
    aliases = models.CharField(
        max_length=1000, blank=True, default="",
        help_text="Models this key may use: names and patterns, comma-separated (coder, chat*); empty = all.")
    max_concurrent = models.PositiveIntegerField(null=True, blank=True,
                                                 help_text="Requests open at once; empty = no limit.")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Empty = no limit.")
    tokens_per_day = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Prompt + completion tokens per UTC day; empty = no limit.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused from then on; empty = never.")
    enabled = models.BooleanField(default=True, help_text="A disabled (revoked) key is refused.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False,
                                        help_text="Written about once a second while it is used.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def set_key(self, key: str):
        """Store what identifies `key` (its hash and prefix), not the key."""
        self.key_hash, self.prefix = key_hash(key), visible_prefix(key)

    @property
    def scope(self) -> str:
        return ", ".join(parse_scope(self.aliases)) or "all models"
