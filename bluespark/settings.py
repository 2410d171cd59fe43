"""Settings for every environment, read from the process environment.

``BLUESPARK_ENV`` chooses the environment: ``dev`` (the embedded run), ``test``
(the suite, on real PostgreSQL and Redis) or ``prod``. Production refuses to
start on an unsafe value instead of warning about it.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from bluespark.environment import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_optional,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("BLUESPARK_VAR_DIR", str(BASE_DIR / "var")))

ENVIRONMENT = env_choice("BLUESPARK_ENV", ("dev", "test", "prod"), "dev")
IS_PROD = ENVIRONMENT == "prod"
IS_TEST = ENVIRONMENT == "test"

DEBUG = env_bool("DEBUG", ENVIRONMENT == "dev")

# --- secrets -----------------------------------------------------------------

_WEAK_SECRET_PREFIXES = ("django-insecure", "changeme", "change-me", "secret", "dev-")
MIN_SECRET_KEY_LENGTH = 50


def _dev_secret_key() -> str:
    """Dev keeps one generated key under var/ so sessions survive restarts."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(64), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


if IS_PROD:
    SECRET_KEY = env_str("SECRET_KEY")
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off when BLUESPARK_ENV=prod.")
    if len(SECRET_KEY) < MIN_SECRET_KEY_LENGTH or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} random characters in prod.")
    if SECRET_KEY.lower().startswith(_WEAK_SECRET_PREFIXES):
        raise ImproperlyConfigured("SECRET_KEY looks like a default or example value; generate a new one.")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must name the site's host names in prod.")
    if "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must not contain '*' in prod.")
elif IS_TEST:
    SECRET_KEY = env_optional("SECRET_KEY") or secrets.token_urlsafe(64)
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["testserver", "localhost", "127.0.0.1"])
else:
    SECRET_KEY = env_optional("SECRET_KEY") or _dev_secret_key()
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

# Links in emails are built from this, never from the request's Host header.
BASE_URL = env_str("BLUESPARK_BASE_URL", "https://localhost" if IS_PROD else "http://127.0.0.1:8000").rstrip("/")
if IS_PROD and not BASE_URL.startswith("https://"):
    raise ImproperlyConfigured("BLUESPARK_BASE_URL must be an https:// URL in prod.")

# --- applications ------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "axes",
    "security",
    "audit",
    "accounts",
    "contacts",
    "campaigns",
    "delivery",
    # Last: the project itself (base templates, operator commands).
    "bluespark",
]

MIDDLEWARE = [
    # First, so that every request (static files and redirects included) gets
    # a request id and exactly one access-log line.
    "audit.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.sessions.SessionTrackingMiddleware",
    # After sessions are checked: who must use 2FA and has not set it up reaches only enrolment.
    "accounts.two_factor_middleware.TwoFactorRequirementMiddleware",
    # Staff in a support session act as the member from here on (role checks, account scope).
    "accounts.support_middleware.SupportSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "accounts.middleware.AccountScopeMiddleware",
    # A request its rate limit cannot count (Redis down) gets a 503, not a 500.
    "security.middleware.RateLimitUnavailableMiddleware",
    # Last, as django-axes requires.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "bluespark.urls"
WSGI_APPLICATION = "bluespark.wsgi.application"

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
                "accounts.context_processors.account_navigation",
            ],
        },
    },
]

# --- data ----------------------------------------------------------------------

_DEFAULT_DATABASE_URLS = {
    "dev": f"sqlite:///{VAR_DIR / 'bluespark.sqlite3'}",
    "test": "postgres://postgres@127.0.0.1:5432/bluespark",
}
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", _DEFAULT_DATABASE_URLS.get(ENVIRONMENT)),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60 if IS_PROD else 0, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded run shares one SQLite file between the web server, a worker
    # and beat: wait for the write lock instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
if IS_PROD and DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    raise ImproperlyConfigured("Production runs on PostgreSQL: set DATABASE_URL to a postgres:// URL.")

# The key store holds every account's wrapped keys, in its own database so
# that backups of the application's data never carry them (DESIGN.md §5).
_DEFAULT_KEYSTORE_URLS = {
    "dev": f"sqlite:///{VAR_DIR / 'keystore.sqlite3'}",
    "test": "postgres://postgres@127.0.0.1:5432/bluespark_keystore",
}
DATABASES["keystore"] = dj_database_url.parse(
    env_str("KEYSTORE_DATABASE_URL", _DEFAULT_KEYSTORE_URLS.get(ENVIRONMENT)),
    conn_max_age=DATABASES["default"]["CONN_MAX_AGE"],
    conn_health_checks=True,
)
if DATABASES["keystore"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["keystore"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
if IS_PROD:
    _app_db, _key_db = DATABASES["default"], DATABASES["keystore"]
    if (_app_db["HOST"], _app_db["PORT"], _app_db["NAME"]) == (_key_db["HOST"], _key_db["PORT"], _key_db["NAME"]):
        raise ImproperlyConfigured("KEYSTORE_DATABASE_URL must name another database than DATABASE_URL.")
DATABASE_ROUTERS = ["security.routers.KeyStoreRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- keyring -------------------------------------------------------------------
# Master keys and password peppers, never in a database (security/keyring.py):
# a file named by BLUESPARK_KEYRING_FILE, or the document itself in
# BLUESPARK_KEYRING (read by the keyring module, not kept in settings). Dev
# and test create their own file on first start; prod must be given one.
KEYRING_IN_ENVIRONMENT = bool(os.environ.get("BLUESPARK_KEYRING"))
KEYRING_AUTOCREATE = not IS_PROD
KEYRING_FILE = os.environ.get("BLUESPARK_KEYRING_FILE") or (
    "" if IS_PROD else str(VAR_DIR / f"keyring-{ENVIRONMENT}.json")
)
if IS_PROD and not KEYRING_IN_ENVIRONMENT:
    if not KEYRING_FILE:
        raise ImproperlyConfigured("Prod needs a keyring: set BLUESPARK_KEYRING_FILE (or BLUESPARK_KEYRING).")
    if not Path(KEYRING_FILE).is_file():
        raise ImproperlyConfigured(f"BLUESPARK_KEYRING_FILE={KEYRING_FILE!r} is not a readable file.")

# Uploaded contact imports wait here, encrypted under the account's data key,
# until their import ends (contacts/importing.py). The web server writes them
# and a worker reads them: in production, a volume both mount.
IMPORT_DIR = Path(env_str("BLUESPARK_IMPORT_DIR", str(VAR_DIR / "imports")))
IMPORT_MAX_UPLOAD_BYTES = env_int("BLUESPARK_IMPORT_MAX_UPLOAD_MB", 512, minimum=1) * 1024 * 1024

# How long a process trusts its idea of an account's newest data key. A key
# rotation waits this long before its last pass, so that no process still
# seals values with the old key when that key is destroyed.
DATA_KEY_CACHE_SECONDS = env_int("BLUESPARK_DATA_KEY_CACHE_SECONDS", 30, minimum=0)

# --- Redis (broker, cache, rate limits) ------------------------------------------

_DEFAULT_REDIS_URLS = {
    "dev": f"redis://127.0.0.1:{env_int('BLUESPARK_EMBEDDED_REDIS_PORT', 6391, minimum=1)}/0",
    "test": "redis://127.0.0.1:6379/1",
}
REDIS_URL = env_str("REDIS_URL", _DEFAULT_REDIS_URLS.get(ENVIRONMENT))

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"bluespark:{ENVIRONMENT}",
        "TIMEOUT": 300,
    }
}

# --- Celery --------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = timedelta(hours=1)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
# A task is acknowledged after it ran, so a worker killed mid-task loses
# nothing: tasks must therefore be safe to run twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Long, heavy work goes to the bulk queue so it never delays interactive tasks.
CELERY_TASK_ROUTES = {
    "accounts.tasks.reseal_account_data": {"queue": "bulk"},
    "accounts.tasks.purge_account": {"queue": "bulk"},
    "contacts.import_tasks.run_import": {"queue": "bulk"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Exactly one beat runs (Procfile, docker-compose.yml); docs/operations.md lists these jobs.
# A run that waited in the queue past the next one is dropped ("expires"): the next one does its work.
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "purge-expired-idempotency-records": {
        "task": "accounts.tasks.purge_expired_idempotency_records",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    "clear-expired-sessions": {
        "task": "accounts.tasks.clear_expired_sessions",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    "purge-spent-email-changes": {
        "task": "accounts.tasks.purge_spent_email_changes",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    "purge-dead-invitations": {
        "task": "accounts.tasks.purge_dead_invitations",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    "discard-abandoned-uploads": {
        "task": "contacts.import_tasks.discard_abandoned_uploads",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
}

# --- authentication -------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Argon2id over a keyring pepper; plain Argon2 hashes still verify and are
# upgraded at the next login.
PASSWORD_HASHERS = [
    "security.hashers.PepperedArgon2PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
]
# Django's defaults (about 240 ms per hash here). The suite uses cheaper
# parameters of the same algorithm so that building the cast stays fast.
ARGON2_PARAMETERS = (
    {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
    if IS_TEST
    else {"time_cost": 2, "memory_cost": 102400, "parallelism": 8}
)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sensitive actions need a password check at most this old (accounts/reauth.py).
REAUTHENTICATION_SECONDS = env_int("BLUESPARK_REAUTHENTICATION_SECONDS", 300, minimum=30)
# A support session lasts this long at most (and never beyond its grant).
SUPPORT_SESSION_MINUTES = env_int("BLUESPARK_SUPPORT_SESSION_MINUTES", 60, minimum=5)
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:home"
LOGOUT_REDIRECT_URL = "accounts:login"
# Activation (and, later, reset) links stay valid for one day.
PASSWORD_RESET_TIMEOUT = 24 * 3600

AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
# Two independent counters: one per username and one per client address.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_FORM_FIELD = "username"
AXES_USERNAME_CALLABLE = "accounts.lockout.canonical_login_username"
AXES_CLIENT_IP_CALLABLE = "audit.request_context.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_SENSITIVE_PARAMETERS = ["username", "password"]
AXES_VERBOSE = False

# --- requests, cookies, headers -------------------------------------------------

TRUSTED_PROXIES = env_list("BLUESPARK_TRUSTED_PROXIES", [])

SESSION_ENGINE = "django.contrib.sessions.backends.db"
# A session ends after this long without a request, and after this long in any case.
SESSION_IDLE_SECONDS = env_int("BLUESPARK_SESSION_IDLE_SECONDS", 2 * 3600, minimum=60)
SESSION_ABSOLUTE_SECONDS = env_int("BLUESPARK_SESSION_ABSOLUTE_SECONDS", 12 * 3600, minimum=300)
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_SECONDS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# The dashboard reads the token from the page, never from the cookie.
CSRF_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "bluespark.views.csrf_failure"

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

if IS_PROD:
    # TLS ends at the proxy in front; it sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # __Host- cookies are bound to this exact host, Secure, with Path=/.
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    CSRF_TRUSTED_ORIGINS = [BASE_URL]

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

# --- static files ------------------------------------------------------------------

STATIC_URL = "static/"
# Collected at image build time in prod; dev and test serve from the finders.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))) if IS_PROD else None
WHITENOISE_USE_FINDERS = not IS_PROD
# Front-end packages come from the npm registry at build time (make), never a CDN.
NODE_MODULES_DIR = Path(env_str("BLUESPARK_NODE_MODULES", str(BASE_DIR / "node_modules")))
STATICFILES_DIRS = [("vendor/htmx", NODE_MODULES_DIR / "htmx.org" / "dist")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if IS_PROD
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- email ---------------------------------------------------------------------------

DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Bluespark <no-reply@bluespark.localhost>")
if IS_PROD:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env_str("EMAIL_HOST")
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_optional("EMAIL_HOST_PASSWORD") or ""
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
elif IS_TEST:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
else:
    # The embedded run prints mail (sign-up links) to the console it runs in.
    EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

# --- API -------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "bluespark.rest.KeysetCursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "bluespark.rest.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
# Per API key, shared by every process (security/ratelimit.py).
API_REQUESTS_PER_MINUTE = env_int("BLUESPARK_API_REQUESTS_PER_MINUTE", 600, minimum=1)
# How long a process keeps an API key the database verified (accounts/key_cache.py). A
# revocation still takes effect at once through Redis; 0 looks every key up every request.
API_KEY_CACHE_SECONDS = env_int("BLUESPARK_API_KEY_CACHE_SECONDS", 60, minimum=0)
# Failed keys per client address before it is refused for a while.
API_KEY_FAILURES_PER_HOUR = env_int("BLUESPARK_API_KEY_FAILURES_PER_HOUR", 30, minimum=1)
SPECTACULAR_SETTINGS = {
    "TITLE": "Bluespark API",
    "DESCRIPTION": "The Bluespark REST API. Every request is authenticated and scoped to one account.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
}

# --- audiences ---------------------------------------------------------------------------

# Up to this many contacts, segment counts are live; above it, counted in the background and cached.
SEGMENT_LIVE_COUNT_LIMIT = env_int("BLUESPARK_SEGMENT_LIVE_COUNT_LIMIT", 100_000, minimum=0)

# --- i18n ------------------------------------------------------------------------------

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- logging ---------------------------------------------------------------------------

LOG_LEVEL = env_choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "access": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if IS_PROD else "plain",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "bluespark.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        # Django's own per-request lines would duplicate the access log.
        "django.server": {"handlers": [], "level": "ERROR", "propagate": False},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # Axes logs each attempt at INFO with its URL path, which can hold a
        # one-time token; our own access log and security events cover it.
        "axes": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}

# --- seeds -------------------------------------------------------------------------------

DEMO_USER_EMAIL = "demo@bluespark.localhost"
