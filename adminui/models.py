"""The request log: one row per proxied request, written by `adminui.writer` only."""
from django.db import models


class RequestLog(models.Model):
    """One proxied request as it happened (see `routing.core.exchange.Exchange`)."""

    request_id = models.CharField(max_length=32, unique=True,
                                  help_text="Also returned to the client as the X-Request-Id header.")
    started_at = models.DateTimeField(help_text="When the request arrived.")
    api = models.CharField(max_length=10, help_text="Client dialect: ollama, openai, responses or anthropic.")
    endpoint = models.CharField(max_length=100, help_text="Client-facing path, e.g. /api/chat.")
    client = models.CharField(max_length=100, blank=True, help_text="Client address.")
    user_agent = models.CharField(max_length=300, blank=True)
    key_name = models.CharField(max_length=100, blank=True, default="",
                                help_text='Whose API key: its name, "operator" for API_KEY, empty for none.')
    requested_model = models.CharField(max_length=200, blank=True, help_text="The name the client asked for.")
    alias = models.CharField(max_length=200, blank=True, help_text="The alias it matched; empty for pass-through.")
    upstream_model = models.CharField(max_length=200, blank=True, help_text="The LM Studio model id used.")
    backend = models.CharField(max_length=100, blank=True,
                               help_text="The LM Studio backend that served it ('default' is LMSTUDIO_URL; "
                                         "when none answered, the last one tried).")
    stream = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField(help_text="HTTP status; 499 when the client disconnected.")
    outcome = models.CharField(max_length=30, help_text='"ok", "error" or "client disconnected".')
    error = models.TextField(blank=True)
    duration_ms = models.FloatField(help_text="Total time, arrival to last byte.")
    ttft_ms = models.FloatField(null=True, blank=True, help_text="Time to the first token.")
    load_ms = models.FloatField(null=True, blank=True,
                                help_text="Time spent waiting for LM Studio to load the model with the "
                                          "alias's load settings (part of the time to the first token).")
    load = models.TextField(blank=True, help_text="The model load it waited for (JSON): settings, backend, "
                                                  "instance id, LM Studio's load time, whether another "
                                                  "request started it.")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True, help_text="Completion tokens over generation time.")
    ttl = models.IntegerField(null=True, blank=True, help_text="Idle TTL sent to LM Studio, in seconds.")
    request_body = models.TextField(blank=True, help_text="What the client sent (JSON, capped, secrets redacted).")
    upstream_body = models.TextField(blank=True, help_text="What was sent to LM Studio after overrides (JSON, capped).")
    response_text = models.TextField(blank=True, help_text="The assembled answer (capped).")
    thinking = models.TextField(blank=True, help_text="The model's reasoning, when it sent any (capped).")
    tool_calls = models.TextField(blank=True, help_text="Tool calls in the answer (JSON, capped).")
    truncated = models.BooleanField(default=False, help_text="A body was cut at LOG_BODY_MAX_BYTES.")
    replay_of = models.CharField(max_length=32, blank=True, db_index=True,
                                 help_text="The request id of the logged request this one ran again "
                                           "(manage.py replay, or Run again on the detail page).")

    class Meta:
        ordering = ["-started_at", "-id"]
        permissions = [("replay_requestlog", "Can run logged requests again")]
        indexes = [
            models.Index(fields=["started_at", "id"], name="requestlog_started"),
            models.Index(fields=["alias", "started_at"], name="requestlog_alias"),
            models.Index(fields=["upstream_model", "started_at"], name="requestlog_model"),
            models.Index(fields=["status", "started_at"], name="requestlog_status"),
            models.Index(fields=["key_name", "started_at"], name="requestlog_key"),
            # Covers the usage page's two queries (adminui/usage.py): they never read the rows and their
            # bodies. At 100,000 rows on SQLite, 1.6 times faster with small bodies, 3.5 with 6 KB ones.
            models.Index(fields=["started_at", "key_name", "alias", "status", "prompt_tokens",
                                 "completion_tokens", "ttft_ms", "tokens_per_second"], name="requestlog_usage"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(api__in=["ollama", "openai", "responses", "anthropic"]), name="requestlog_api"),
        ]

    def __str__(self):
        return f"{self.started_at:%Y-%m-%d %H:%M:%S} {self.endpoint} {self.requested_model} {self.status}"

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)
