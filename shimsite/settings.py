"""Settings, all read through django-environ from the environment and an optional `.env`.

The names documented in docs/settings.md (LMSTUDIO_URL, ROUTES_FILE, DATABASE_URL, SECRET_KEY, DEBUG,
ALLOWED_HOSTS, ...) are a contract with users: keep them.
"""
from datetime import timedelta
from pathlib import Path

import environ

from corsheaders.defaults import default_headers as default_cors_headers

from routing.core.paths import API_PATH_REGEX
from routing.security.hosts import DEFAULT_ORIGIN_REGEXES
from shimsite.secret import installation_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

# SECRET_KEY from the environment wins; else this installation's own key, made on first start in
# SECRET_KEY_FILE (git-ignored, mode 0600). No key ships with the code.
SECRET_KEY = env("SECRET_KEY", default="") or installation_key(
    Path(env("SECRET_KEY_FILE", default=str(BASE_DIR / ".secret_key"))))
DEBUG = env.bool("DEBUG", default=False)
# Host names answered besides IP literals, localhost, *.localhost, *.local, *.internal and this
# machine's name (routing/hosts.py applies the policy on every path, before Django; Django's own
# check is therefore off).
PROXY_ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
ALLOWED_HOSTS = ["*"]

# --- Access --------------------------------------------------------------------------------------
# When set, every API path needs `Authorization: Bearer <API_KEY>` (see routing/access.py).
API_KEY = env("API_KEY", default="")
# With API_KEY: keep /api/tags, /api/show, /api/version and /v1/models public (model pickers that send
# no key, e.g. GitHub Copilot's Ollama provider); generation still needs the key.
PUBLIC_MODEL_LISTING = env.bool("PUBLIC_MODEL_LISTING", default=False)
# Browser origins allowed to call the API besides Ollama's defaults (this machine's loopback origins,
# app://, file://, tauri://, vscode-webview://, vscode-file://); any other Origin is refused (403).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_ALL_ORIGINS = "*" in CORS_ALLOWED_ORIGINS
CORS_ALLOWED_ORIGINS = [origin for origin in CORS_ALLOWED_ORIGINS if origin != "*"]
CORS_ALLOWED_ORIGIN_REGEXES = list(DEFAULT_ORIGIN_REGEXES)
CORS_URLS_REGEX = API_PATH_REGEX  # the API paths (routing/core/paths.py)
CORS_ALLOW_HEADERS = (*default_cors_headers, "x-api-key")
# Reverse proxies (CIDRs or addresses) whose X-Forwarded-For names the client (routing/security/clients.py);
# without them the header is ignored.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# --- The proxy ---------------------------------------------------------------------------------
LMSTUDIO_URL = env("LMSTUDIO_URL", default="http://127.0.0.1:1234").rstrip("/")
LMSTUDIO_API_KEY = env("LMSTUDIO_API_KEY", default="")
ROUTES_FILE = Path(env("ROUTES_FILE", default=str(BASE_DIR / "routes.yaml")))
# Seconds. Connect fails fast (LM Studio is usually local); read is long because a JIT model load
# happens before the first token.
UPSTREAM_CONNECT_TIMEOUT = env.float("UPSTREAM_CONNECT_TIMEOUT", default=5.0)
UPSTREAM_READ_TIMEOUT = env.float("UPSTREAM_READ_TIMEOUT", default=300.0)
# Seconds /ready waits for LM Studio before it answers 503.
READY_TIMEOUT = env.float("READY_TIMEOUT", default=2.0)
UPSTREAM_MAX_CONNECTIONS = env.int("UPSTREAM_MAX_CONNECTIONS", default=256)
# Seconds LM Studio may take to load a model with an alias's load settings (/api/v1/models/load):
# a large model with a long context takes minutes, and the request waits for it.
MODEL_LOAD_TIMEOUT = env.float("MODEL_LOAD_TIMEOUT", default=900.0)
# Seconds a request waits for one of those connections before a 503 (the proxy is at its limit).
UPSTREAM_POOL_TIMEOUT = env.float("UPSTREAM_POOL_TIMEOUT", default=10.0)
# Model requests one client (an address, or an API key) may have open at LM Studio at once; more are a 429.
MAX_CLIENT_REQUESTS = env.int("MAX_CLIENT_REQUESTS", default=max(1, UPSTREAM_MAX_CONNECTIONS // 4))
# Seconds a client has to send a request's head and body, and that an idle connection stays open.
CLIENT_READ_TIMEOUT = env.float("CLIENT_READ_TIMEOUT", default=30.0)
# Seconds a backend that failed (unreachable, or a 5xx before streaming) is passed over before the
# next request tries it again (routes.yaml `backends:`).
BACKEND_COOL_OFF = env.float("BACKEND_COOL_OFF", default=10.0)
# How long LM Studio's model list is reused before it is fetched again.
MODEL_LIST_TTL = env.float("MODEL_LIST_TTL", default=10.0)
# `ollama pull` (routing.proxy.pull): seconds between polls of LM Studio's download job, and how long a
# download may make no progress (paused, stuck) before the pull ends with an error.
PULL_POLL_INTERVAL = env.float("PULL_POLL_INTERVAL", default=0.5)
PULL_STALL_TIMEOUT = env.float("PULL_STALL_TIMEOUT", default=300.0)
# The version reported on /api/version: the newest Ollama whose API the proxy covers (0.14.0 added
# /v1/messages). GitHub Copilot Chat refuses anything below 0.6.4, Codex --oss below 0.13.4.
OLLAMA_VERSION = env("OLLAMA_VERSION", default="0.14.0")

# The server's speed-ups that lean on Twisted's, Daphne's, aiohttp's and Django's internals (the head
# gate before the body is read, one send per answer, the lean API handler; shimsite/server.py). Off,
# or when an internal they need is missing: stock Daphne and Django, the same checks by the middleware.
FAST_PATH = env.bool("FAST_PATH", default=True)

# Seconds a stop (SIGTERM, SIGINT) lets requests in flight finish before their streams end with an
# error event (shimsite/shutdown.py).
SHUTDOWN_GRACE = env.float("SHUTDOWN_GRACE", default=30.0)

# --- The request log (adminui) ------------------------------------------------------------------
REQUEST_LOG = env.bool("REQUEST_LOG", default=True)          # off: no observer, nothing written
LOG_BODIES = env.bool("LOG_BODIES", default=True)            # off: metadata only, no bodies
LOG_BODY_MAX_BYTES = env.int("LOG_BODY_MAX_BYTES", default=64 * 1024)
LOG_RETENTION_DAYS = env.float("LOG_RETENTION_DAYS", default=30)  # 0: keep forever
LOG_MAX_ROWS = env.int("LOG_MAX_ROWS", default=100_000)      # 0: no limit
LOG_BATCH_MAX = env.int("LOG_BATCH_MAX", default=500)        # rows per INSERT batch at most
# Rows that may wait for an unavailable database (a restart, a lock, a full disk); past that, new rows
# are dropped and counted (requestlog_rows_dropped_total in /metrics).
LOG_QUEUE_MAX = env.int("LOG_QUEUE_MAX", default=10_000)
LOG_PRUNE_INTERVAL = env.float("LOG_PRUNE_INTERVAL", default=300)  # seconds between automatic prunes
# What each finished request is handed to besides the metrics (routing/proxy/state.py): factories called
# with the application's state.
EXCHANGE_OBSERVERS = ["adminui.request_log.RequestLogObserver"] if REQUEST_LOG else []

# --- Django ------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "adminui",  # before django.contrib.admin, so its admin templates (base_site.html) take precedence
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "axes",
    "csp",
    "routing",
]

MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",  # first: preflights and 401s carry the CORS headers
    "routing.api.access.ApiAccessMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

# Admin login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords from one address the
# login is refused (429), even with the right password, for AXES_COOLOFF_TIME.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_COOLOFF_MINUTES", default=15))
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

# Content-Security-Policy (django-csp) on the admin and history pages, which display whatever API
# clients sent: scripts only from this server's static files, no framing, no plugins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],  # the admin's style attributes; no script runs
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],  # the live history's WebSocket (CSP 3: 'self' covers ws:/wss:)
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# The API paths (routing/core/paths.py) are served by a lean handler (shimsite/asgi.py) with only
# API_MIDDLEWARE: API clients carry no cookies or sessions and the views are CSRF-exempt, and every sync
# middleware above would cost a thread hop per request. API_MIDDLEWARE must be async-native (no
# process_view/... hooks).
API_MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",
    "routing.api.access.ApiAccessMiddleware",
]

ROOT_URLCONF = "shimsite.urls"
ASGI_APPLICATION = "shimsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the history pages read while the request log writes; IMMEDIATE avoids lock upgrades.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
         "transaction_mode": "IMMEDIATE", "timeout": 20}
    )

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Ollama clients send large base64 images; Django's 2.5 MB default would reject them.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=32 * 1024 * 1024)
APPEND_SLASH = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "filters": {"masked_path_keys": {"()": "shimsite.path_keys.MaskedAccessLog"}},
    "loggers": {
        "django.channels.server": {"filters": ["masked_path_keys"]},  # runserver's access lines
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # Its own handler, and no further: the `daphne` command gives the root logger a handler of its own,
        # which printed every line a second time.
        "routing": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO"), "propagate": False},
        # httpx logs every upstream request at INFO, and Daphne sends INFO to stderr: a line per request,
        # about 3% of the proxy's CPU under load. Failures reach the client and the request log anyway.
        "httpx": {"level": "WARNING"},
    },
}
