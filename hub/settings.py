"""Django settings for LLM Hub. Every value comes from the environment via ``hub.env``.

Embedded default (nothing set): SQLite under ``HUB_DATA_DIR``, a file cache shared by the
processes on this machine, the in-memory channel layer and Celery running tasks in process.
Production (``HUB_DATABASE_URL`` / ``HUB_REDIS_URL`` set): PostgreSQL through psycopg 3 and
Redis as cache, channel layer and Celery broker. The README lists every variable.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import Stemmer  # PyStemmer: the keyword search's languages
from django.core.exceptions import ImproperlyConfigured

from hub import logs, ocr
from hub.env import (
    check_redis_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

HUB_ENV = env_choice("HUB_ENV", "dev", ("dev", "test", "prod"))
DATA_DIR = Path(env_str("HUB_DATA_DIR", str(BASE_DIR / ".hub"))).resolve()
DEBUG = env_bool("HUB_DEBUG", False)


def _secret_key() -> str:
    key = env_str("HUB_SECRET_KEY")
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured("HUB_SECRET_KEY must be at least 32 characters")
        return key
    if HUB_ENV == "prod":
        raise ImproperlyConfigured("HUB_SECRET_KEY must be set when HUB_ENV=prod")
    # dev/test: one random key per data directory, so sessions survive restarts
    # without a well-known key ever being shipped in the source.
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# Earlier keys, while a rotation of HUB_SECRET_KEY settles: they still verify what they signed and open the secrets
# they sealed (accounts/sealed.py); `manage.py reseal_secrets` seals those again with the new key.
SECRET_KEY_FALLBACKS = env_list("HUB_SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("HUB_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if HUB_ENV != "prod" else [])
if HUB_ENV == "prod" and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("HUB_ALLOWED_HOSTS must be set when HUB_ENV=prod")
CSRF_TRUSTED_ORIGINS = env_list("HUB_CSRF_TRUSTED_ORIGINS", [])
# the origins whose pages may call the API from a browser (hub/api/cors.py): "*" all, empty none
HUB_CORS_ALLOWED_ORIGINS = env_list("HUB_CORS_ALLOWED_ORIGINS", ["*"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc assets served locally: the hub may have no internet
    "channels",
    "axes",  # sign-in throttling (below)
    "csp",  # the Content-Security-Policy header (below)
    "hub",
    "accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "hub.api.middleware.ApiExceptionMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # answers a locked-out sign-in with the lockout page (429)
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "hub.urls"
ASGI_APPLICATION = "hub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- database -------------------------------------------------------------------------
_database_url = env_str("HUB_DATABASE_URL")
if _database_url:
    DATABASES = {"default": parse_database_url("HUB_DATABASE_URL", _database_url)}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "db.sqlite3"),
            # A file (not :memory:) so the live-server tests' subprocess sees the test data.
            "TEST": {"NAME": str(DATA_DIR / "test-db.sqlite3")},
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the server read while a management command writes.
    DATABASES["default"]["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
elif env_bool("HUB_DB_POOL", True):
    # Under ASGI, sync code runs in executor threads: a pool (psycopg_pool) hands connections
    # back after each use instead of keeping one open per thread.
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": 1,
        "max_size": env_int("HUB_DB_POOL_MAX_SIZE", 20, min_value=1),
        # How long a request waits for a connection (the pool full, or the database down) before its 503.
        "timeout": env_float("HUB_DB_POOL_TIMEOUT", 10.0, min_value=0.1),
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("HUB_DB_CONN_MAX_AGE", 60, min_value=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: cache, channel layer, celery broker -------------------------------------------
REDIS_URL = env_str("HUB_REDIS_URL")
HUB_CACHE_PREFIX = env_str("HUB_CACHE_PREFIX", "hub")
if REDIS_URL:
    check_redis_url("HUB_REDIS_URL", REDIS_URL)
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": HUB_CACHE_PREFIX,
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": HUB_CACHE_PREFIX + ":channels"},
        }
    }
else:
    # A file cache rather than locmem: the server and management commands run in separate
    # processes, and revoking a key in one must invalidate the auth cache of the other.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
            "KEY_PREFIX": HUB_CACHE_PREFIX,
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
# The queue the hub sends tasks to and its workers read: hubs sharing one Redis for different purposes (a test
# run beside a live hub) each name their own.
CELERY_TASK_DEFAULT_QUEUE = env_str("HUB_CELERY_QUEUE", "celery")
# Threads, not processes: a batch (hub/batches/) is network-bound, and a stopping worker hands its batches back from
# its main process (the worker_shutting_down signal), which a prefork pool's children would not see.
CELERY_WORKER_POOL = "threads"
# Without a broker the embedded default runs tasks in the calling process.
CELERY_TASK_ALWAYS_EAGER = env_bool("HUB_CELERY_EAGER", REDIS_URL is None)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "forget-rotated-secrets": {"task": "accounts.forget_rotated_secrets", "schedule": 3600.0},
    "expire-responses": {"task": "accounts.expire_responses", "schedule": 3600.0},
    "expire-chat-completions": {"task": "accounts.expire_chat_completions", "schedule": 3600.0},
    "expire-files": {"task": "accounts.expire_files", "schedule": 3600.0},
    "rollup-usage": {"task": "accounts.rollup_usage", "schedule": env_int("HUB_ROLLUP_SECONDS", 300, min_value=1)},
    # Hourly although a report is monthly: a run with nothing to build is one query, and the in-process beat
    # counts from the hub's start, so a daily period could be missed by a hub restarted more often than that.
    "build-monthly-reports": {
        "task": "accounts.build_monthly_reports",
        "schedule": env_int("HUB_REPORTS_SECONDS", 3600, min_value=1),
    },
}

# --- auth, i18n, static -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# Sign-in throttling (django-axes) on /console/login/ and /admin/login/: after HUB_LOGIN_FAILURE_LIMIT wrong
# passwords for one username, or from one address, that username / address is refused for HUB_LOGIN_COOLOFF_SECONDS
# (the right password included). Counted in Redis when there is one (every hub process shares it; atomic
# increments), else in the database (the embedded default's file cache has no atomic increment); each failure and
# lockout is logged by hub.audit.
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler" if REDIS_URL else "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("HUB_LOGIN_FAILURE_LIMIT", 10, min_value=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("HUB_LOGIN_COOLOFF_SECONDS", 900, min_value=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: per account and per address
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False  # hub.audit logs instead, one line each
AXES_ENABLE_ACCESS_FAILURE_LOG = False
LOGIN_URL = "/console/login/"
LOGIN_REDIRECT_URL = "/console/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# Serve admin/console assets straight from the apps: no collectstatic step for the embedded default.
WHITENOISE_USE_FINDERS = True
if HUB_ENV != "prod":
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# The console's pages run only the hub's own script and styles (no inline script, nothing from elsewhere): an
# injected <script> or on* handler does not run. Django's admin and the API docs pages (Swagger UI, ReDoc) keep
# their own inline code and are left out.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/", "/docs", "/redoc"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- production: HTTPS in front (a TLS-terminating proxy or load balancer) ---------------------------------
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HUB_ENV == "prod"
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if HUB_ENV == "prod":
    # Browsers keep to HTTPS for a year once they have seen the hub over it (0 turns it off).
    SECURE_HSTS_SECONDS = env_int("HUB_HSTS_SECONDS", 31536000, min_value=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HUB_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("HUB_HSTS_PRELOAD", False)
    # The proxy terminates TLS and says so in X-Forwarded-Proto: without this every request looks like plain HTTP
    # (secure cookies never sent back, CSRF's origin check refuses). Only safe behind a proxy that sets the header
    # itself: HUB_TRUST_PROXY_HEADERS=false when the hub is reached directly.
    if env_bool("HUB_TRUST_PROXY_HEADERS", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        USE_X_FORWARDED_HOST = env_bool("HUB_USE_X_FORWARDED_HOST", False)
    # Redirect plain HTTP to HTTPS (off by default: health probes and the proxy's own checks often speak HTTP).
    SECURE_SSL_REDIRECT = env_bool("HUB_SSL_REDIRECT", False)
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$", r"^metrics$"]  # probes and scrapes inside the cluster

# --- the public API -----------------------------------------------------------------------
# Bodies above this are refused with 413 before they are read in full.
HUB_MAX_BODY_BYTES = env_int("HUB_MAX_BODY_BYTES", 8 * 1024 * 1024, min_value=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = HUB_MAX_BODY_BYTES
# The speech routes' uploads (multipart/form-data): the audio file's limit, 25 MB as OpenAI's.
HUB_MAX_AUDIO_BYTES = env_int("HUB_MAX_AUDIO_BYTES", 25 * 1024 * 1024, min_value=1024)
# The Files API's uploads (``POST /files``, a batch's input among them): 200 MB, OpenAI's limit on a batch's input.
# The file is held in memory while it is received and stored (in the database: every replica serves it).
HUB_MAX_FILE_BYTES = env_int("HUB_MAX_FILE_BYTES", 200 * 1024 * 1024, min_value=1024)
# one part of an upload (POST /uploads/{id}/parts): OpenAI's 64 MB; the whole upload is a file, so HUB_MAX_FILE_BYTES
HUB_MAX_UPLOAD_PART_BYTES = env_int("HUB_MAX_UPLOAD_PART_BYTES", 64 * 1024 * 1024, min_value=1024)
# The Batch API's runner (hub/batches/): how many of a batch's requests it sends at once, and how long a runner may
# show no life (it does every quarter of that) before another takes its batch up again (a worker that died).
# /v1/moderations without a "model" (OpenAI's default): the catalog model it runs on (a guard, kind moderation)
HUB_MODERATION_MODEL = env_str("HUB_MODERATION_MODEL", "omni-moderation-latest")
HUB_BATCH_CONCURRENCY = env_int("HUB_BATCH_CONCURRENCY", 8, min_value=1)
HUB_BATCH_STALE_SECONDS = env_float("HUB_BATCH_STALE_SECONDS", 60.0, min_value=1.0)
# background responses the hub's own process answers at once without a broker (make run); the others wait, queued.
# A Celery worker answers as many as its concurrency.
HUB_BACKGROUND_CONCURRENCY = env_int("HUB_BACKGROUND_CONCURRENCY", 16, min_value=1)
# batches whose runner went quiet (a restart) are taken up again where they stopped
CELERY_BEAT_SCHEDULE["resume-batches"] = {"task": "hub.resume_batches", "schedule": HUB_BATCH_STALE_SECONDS / 2}
# vector stores' files in progress whose indexer went quiet are taken up again the same way
CELERY_BEAT_SCHEDULE["resume-vector-store-files"] = {"task": "hub.resume_vector_store_files",
                                                     "schedule": HUB_BATCH_STALE_SECONDS / 2}  # fmt: skip
# background responses (``background: true``) whose runner went quiet are answered again from the start
CELERY_BEAT_SCHEDULE["resume-background-responses"] = {"task": "hub.resume_background_responses",
                                                       "schedule": HUB_BATCH_STALE_SECONDS / 2}  # fmt: skip
# Webhooks (``/v1/webhook_endpoints``, hub/webhooks/): each event is POSTed at once, then again after 10 s, 20 s,
# 40 s ... (at most an hour apart) until the endpoint answers 2xx or HUB_WEBHOOK_RETRY_HOURS have passed (OpenAI's
# 72). An attempt waits HUB_WEBHOOK_TIMEOUT_SECONDS for the answer; HUB_WEBHOOK_CONCURRENCY are sent at once per
# process; the beat looks for due retries every HUB_WEBHOOK_SWEEP_SECONDS. Deliveries are listed in the console
# for HUB_WEBHOOK_DELIVERIES_DAYS.
HUB_WEBHOOK_TIMEOUT_SECONDS = env_float("HUB_WEBHOOK_TIMEOUT_SECONDS", 10.0, min_value=0.1)
HUB_WEBHOOK_RETRY_SECONDS = env_float("HUB_WEBHOOK_RETRY_SECONDS", 10.0, min_value=0.01)
HUB_WEBHOOK_RETRY_HOURS = env_float("HUB_WEBHOOK_RETRY_HOURS", 72.0, min_value=0.0)
HUB_WEBHOOK_CONCURRENCY = env_int("HUB_WEBHOOK_CONCURRENCY", 16, min_value=1)
HUB_WEBHOOK_SWEEP_SECONDS = env_float("HUB_WEBHOOK_SWEEP_SECONDS", 5.0, min_value=0.05)
HUB_WEBHOOK_DELIVERIES_DAYS = env_int("HUB_WEBHOOK_DELIVERIES_DAYS", 7, min_value=1)
# Whether a webhook may go to a loopback, private or link-local address (a tenant's URL could reach the operator's
# own network): allowed on the embedded default (make run: one developer, a receiver on localhost), refused with a
# broker (production) unless set.
HUB_WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("HUB_WEBHOOK_ALLOW_PRIVATE_URLS", REDIS_URL is None)
# The Responses API's ``mcp`` tool (hub/api/mcp_client.py): a remote MCP server's tools listed and called by the
# hub, each operation waiting at most HUB_MCP_TIMEOUT_SECONDS; as for webhooks, a server on a loopback, private or
# link-local address only where HUB_MCP_ALLOW_PRIVATE_URLS (the embedded default's, not production's).
HUB_MCP_TIMEOUT_SECONDS = env_float("HUB_MCP_TIMEOUT_SECONDS", 60.0, min_value=0.1)
HUB_MCP_ALLOW_PRIVATE_URLS = env_bool("HUB_MCP_ALLOW_PRIVATE_URLS", REDIS_URL is None)
# A file in a model's input by ``file_url`` (hub/api/file_inputs.py) is fetched by the hub: as for webhooks, from a
# loopback, private or link-local address only where HUB_FILE_URL_ALLOW_PRIVATE_URLS.
HUB_FILE_URL_ALLOW_PRIVATE_URLS = env_bool("HUB_FILE_URL_ALLOW_PRIVATE_URLS", REDIS_URL is None)
# A PDF page without a text layer (a scan) is read by OCR (Tesseract, hub/ocr.py) in these languages, Tesseract's names
# joined by "+" ("eng+deu"), for vector stores and files in a model's input; "none": not read (kept "" here). By default
# English where Tesseract is installed (the hub's image has it), else none; each language named is checked here.
HUB_OCR_LANGUAGES = env_str("HUB_OCR_LANGUAGES", ocr.default_languages() or "none")
HUB_OCR_LANGUAGES = "" if HUB_OCR_LANGUAGES == "none" else HUB_OCR_LANGUAGES
# A PDF with more pages without a text layer than this is not read by OCR (each takes ~0.5-1 s of a core): a tenant's
# 10,000-page scan would hold an indexer for hours. A file in a model's input: at most 100 (its request waits).
HUB_OCR_MAX_PAGES = env_int("HUB_OCR_MAX_PAGES", 500, min_value=0)
if HUB_OCR_LANGUAGES and (_missing := ocr.missing(HUB_OCR_LANGUAGES)):
    _packages = " ".join(["tesseract-ocr"] + [f"tesseract-ocr-{m}" for m in _missing if m != "eng"])
    raise ImproperlyConfigured(f"HUB_OCR_LANGUAGES: this machine's Tesseract lacks {', '.join(_missing)} (Debian: "
                               f"apt-get install {_packages}; none: no OCR)")  # fmt: skip
# GET /metrics (hub/metrics.py): Prometheus's text format, open like /health unless this bearer token is set
HUB_METRICS_TOKEN = env_str("HUB_METRICS_TOKEN")
# Whether /metrics also counts each tenant's requests and tokens (a series per tenant, model and status or kind: off
# unless the operator wants per-tenant dashboards or chargeback and has the series to spare)
HUB_METRICS_TENANTS = env_bool("HUB_METRICS_TENANTS", False)
CELERY_BEAT_SCHEDULE["send-webhooks"] = {"task": "hub.send_webhooks", "schedule": HUB_WEBHOOK_SWEEP_SECONDS}
CELERY_BEAT_SCHEDULE["expire-webhook-deliveries"] = {"task": "accounts.expire_webhook_deliveries", "schedule": 3600.0}
# the embedding model a vector store uses unless its creation names one (``embedding_model``): a catalog embedding
# model the creating key is entitled to
HUB_VECTOR_STORE_EMBEDDING_MODEL = env_str("HUB_VECTOR_STORE_EMBEDDING_MODEL", "all-minilm-l6-v2")
# a catalog rerank model (a cross-encoder) that re-ranks a search's best chunks when the key may use it and the search
# does not say ``ranking_options.ranker: "none"`` (hub/vector_stores/search.py); empty: no re-ranking
HUB_VECTOR_STORE_RERANK_MODEL = env_str("HUB_VECTOR_STORE_RERANK_MODEL", "")
# a catalog chat model that rewrites a search's queries when it asks ``rewrite_query: true`` and the key may use it
# (hub/vector_stores/rewrite.py); empty: queries are searched as given
HUB_VECTOR_STORE_REWRITE_MODEL = env_str("HUB_VECTOR_STORE_REWRITE_MODEL", "")
# how a hybrid search's keyword half finds the terms of chunks and queries (hub/vector_stores/keywords.py): a Snowball
# stemmer's language ("english": Lucene's English stop words dropped too, every form of a word one term) or "none"
# (words only, case-folded)
HUB_VECTOR_STORE_KEYWORD_LANGUAGE = env_choice("HUB_VECTOR_STORE_KEYWORD_LANGUAGE", "english",
                                               ("none", *sorted(Stemmer.algorithms())))  # fmt: skip
# chunk vectors, and hybrid searches' keyword postings, kept in memory per hub process for searches
# (hub/vector_stores/file_cache.py); 0 keeps none
HUB_VECTOR_CACHE_MB = env_int("HUB_VECTOR_CACHE_MB", 256, min_value=0)
# Stored Responses API answers (``store``, the default) are deleted this many days after they were made (OpenAI
# keeps them 30); 0 keeps them until deleted.
HUB_RESPONSES_RETENTION_DAYS = env_int("HUB_RESPONSES_RETENTION_DAYS", 30, min_value=0)
# Stored chat completions (``store: true``) likewise (OpenAI keeps them 30 days too).
HUB_CHAT_COMPLETIONS_RETENTION_DAYS = env_int("HUB_CHAT_COMPLETIONS_RETENTION_DAYS", 30, min_value=0)
# A stopping hub process lets its streams run this long, then ends them with an error event (metered); uvicorn
# closes what is left HUB_SHUTDOWN_GRACE_SECONDS + 5 s after the signal.
HUB_SHUTDOWN_GRACE_SECONDS = env_float("HUB_SHUTDOWN_GRACE_SECONDS", 10.0, min_value=0.0)
# How long a verified key is cached; revocation and entitlement changes invalidate at once.
HUB_AUTH_CACHE_SECONDS = env_int("HUB_AUTH_CACHE_SECONDS", 300, min_value=0)
# Rate limits and budgets live in Redis (in this process without it). With Redis unreachable, requests through
# limited keys or tenants are refused with 503 (fail closed: a budget is never overshot); true lets them through.
HUB_LIMITS_FAIL_OPEN = env_bool("HUB_LIMITS_FAIL_OPEN", False)
# The most tokens a summary of POST /v1/responses/compact may take (less where the model's output limit is lower).
HUB_COMPACTION_MAX_TOKENS = env_int("HUB_COMPACTION_MAX_TOKENS", 2048, min_value=16)
# A request on its way to a model has a row (accounts/open_requests.py) leased this long, renewed by its hub
# process every quarter of it; once a lease runs out (the process was killed), the beat's reaper meters the
# request from the deployments' tallies.
HUB_OPEN_REQUEST_LEASE_SECONDS = env_float("HUB_OPEN_REQUEST_LEASE_SECONDS", 120.0, min_value=0.2)
CELERY_BEAT_SCHEDULE["reap-open-requests"] = {"task": "hub.reap_open_requests",
                                              "schedule": HUB_OPEN_REQUEST_LEASE_SECONDS / 2}  # fmt: skip
# Usage rows that cannot be written (the database down) wait here, and are replayed this often until written.
HUB_SPOOL_DIR = Path(env_str("HUB_SPOOL_DIR", str(DATA_DIR / "spool"))).resolve()
HUB_SPOOL_RETRY_SECONDS = env_float("HUB_SPOOL_RETRY_SECONDS", 5.0, min_value=0.1)
# several deployments of a model: send a request to the one most likely to hold its prompt's prefix in its KV cache
# (within a load bound); false: fewest outstanding requests
HUB_PREFIX_ROUTING = env_bool("HUB_PREFIX_ROUTING", True)
# whose requests share our deployments' prompt caches (hub/api/prompt_cache.py): "tenant", each tenant its own (as
# OpenAI's caches are per organization: no tenant can tell from a response's speed or cached_tokens what another
# sent); "shared", all tenants (an operator whose tenants trust each other, for more cache hits on common prompts)
HUB_PROMPT_CACHE_SCOPE = env_choice("HUB_PROMPT_CACHE_SCOPE", "tenant", ("tenant", "shared"))
# the currency of the model prices (accounts.pricing) and of /v1/costs (ISO 4217, lower case as OpenAI writes it)
HUB_CURRENCY = env_str("HUB_CURRENCY", "usd").lower()
if not (len(HUB_CURRENCY) == 3 and HUB_CURRENCY.isascii() and HUB_CURRENCY.isalpha()):
    raise ImproperlyConfigured(f"HUB_CURRENCY must be a three-letter currency code (usd, eur), got {HUB_CURRENCY!r}")
# last_used_at is written at most once per key per this many seconds.
HUB_LAST_USED_RESOLUTION_SECONDS = env_int("HUB_LAST_USED_RESOLUTION_SECONDS", 60, min_value=1)
# After a rotation the old secret keeps working this long (default 24 h).
HUB_KEY_ROTATION_GRACE_SECONDS = env_int("HUB_KEY_ROTATION_GRACE_SECONDS", 86400, min_value=0)
HUB_HOST = env_str("HUB_HOST", "127.0.0.1")
HUB_PORT = env_int("HUB_PORT", 8000, min_value=1, max_value=65535)
HUB_PUBLIC_URL = env_str("HUB_PUBLIC_URL", f"http://{HUB_HOST}:{HUB_PORT}")

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "EXCEPTION_HANDLER": "hub.api.errors.drf_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- the console ----------------------------------------------------------------------------
# How often an open usage dashboard is summed again (pushed only when it changed), and how long one live
# stream lasts before the browser reconnects (and the session and role are checked again).
HUB_CONSOLE_LIVE_SECONDS = env_float("HUB_CONSOLE_LIVE_SECONDS", 2.0, min_value=0.1)
HUB_CONSOLE_LIVE_MAX_SECONDS = env_int("HUB_CONSOLE_LIVE_MAX_SECONDS", 300, min_value=5)

# The public API's OpenAPI document: /openapi.json, Swagger UI at /docs, ReDoc at /redoc.
SPECTACULAR_SETTINGS = {
    "TITLE": "LLM Hub API",
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "",
    "PREPROCESSING_HOOKS": ["hub.api.openapi.public_routes_once"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "hub.api.openapi.add_generation_routes"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOG_LEVEL = env_choice("HUB_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
# text, or json: a JSON object a line, for a log pipeline (hub/logs.py; uvicorn's and Celery's records too)
HUB_LOG_FORMAT = env_choice("HUB_LOG_FORMAT", "text", logs.FORMATS)
CELERY_WORKER_HIJACK_ROOT_LOGGER = HUB_LOG_FORMAT == "text"  # json: the worker's records go through LOGGING
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": logs.formatter(HUB_LOG_FORMAT)},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "mcp": {"level": "WARNING"},
    },
}
if not REDIS_URL:
    # The embedded default runs the beat's tasks on a thread of the hub (hub/beat.py): Celery's line for each task
    # that succeeded (webhooks every 5 s) would bury the requests' log; a failure is still logged.
    LOGGING["loggers"]["celery.app.trace"] = {"level": "WARNING"}
