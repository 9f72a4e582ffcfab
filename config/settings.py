"""Settings for the credit-information exchange, read from the environment only (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from config.env import env_bool, env_cache_url, env_choice, env_int, env_list, env_networks, env_rate, env_str
from core.secrets import SECRET_NAMES, load_dev_keys

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

# Secrets: in development they are generated once into an ignored file and reused; in
# production a missing one stays None and the `exchange.E001` system check refuses to start.
_secrets = {name: env_str(name) for name in SECRET_NAMES}
if DEBUG and not all(_secrets.values()):
    _dev = load_dev_keys(BASE_DIR / ".dev-keys.env")
    _secrets = {name: value or _dev.get(name) for name, value in _secrets.items()}

SECRET_KEY = _secrets["SECRET_KEY"] or "unset-refused-by-system-check"
SECRET_KEY_MISSING = _secrets["SECRET_KEY"] is None
EXCHANGE_SUBJECT_KEY = _secrets["EXCHANGE_SUBJECT_KEY"]
EXCHANGE_FIELD_KEYS = _secrets["EXCHANGE_FIELD_KEYS"]
EXCHANGE_AUDIT_SIGNING_KEY = _secrets["EXCHANGE_AUDIT_SIGNING_KEY"]
EXCHANGE_OPRF_KEY = _secrets["EXCHANGE_OPRF_KEY"]  # VOPRF key seed (core.oprf)
# Subjects as raw IDs (evaluated by the exchange) and blind ones, or blind ones only (`refuse`).
EXCHANGE_RAW_SUBJECTS = env_choice("EXCHANGE_RAW_SUBJECTS", "accept", ("accept", "refuse"))

EXCHANGE_DISPUTE_DAYS = env_int("EXCHANGE_DISPUTE_DAYS", 20, minimum=1)
EXCHANGE_RETENTION_YEARS = env_int("EXCHANGE_RETENTION_YEARS", 5, minimum=1)
EXCHANGE_THROTTLE_RATE = env_rate("EXCHANGE_THROTTLE_RATE", "1200/minute")  # None: off
EXCHANGE_RECIPROCITY_DAYS = env_int("EXCHANGE_RECIPROCITY_DAYS", 0)

# Limits counted in one store for every process (members/limits.py, docs/security.md): the
# database, or Redis when CACHE_URL names one.
EXCHANGE_INQUIRY_QUOTA = env_int("EXCHANGE_INQUIRY_QUOTA", 20000)  # per rolling 24 hours; 0: none
EXCHANGE_DISPUTE_QUOTA = env_int("EXCHANGE_DISPUTE_QUOTA", 200)
EXCHANGE_AUTH_FAILURE_RATE = env_rate("EXCHANGE_AUTH_FAILURE_RATE", "60/minute")  # per client address
EXCHANGE_TRUSTED_PROXIES = env_networks("EXCHANGE_TRUSTED_PROXIES", "")
CACHE_URL = env_cache_url("CACHE_URL")

# Limits on what one request may carry.
EXCHANGE_MAX_JSON_BODY = env_int("EXCHANGE_MAX_JSON_BODY", 8 * 1024 * 1024, minimum=1024)
EXCHANGE_MAX_UPLOAD_BYTES = env_int("EXCHANGE_MAX_UPLOAD_BYTES", 2 * 1024**3, minimum=1024)
EXCHANGE_MAX_BATCH = 1000
EXCHANGE_PAGE_SIZE = 50
EXCHANGE_MAX_PAGE_SIZE = 500

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "core",
    "members",
    "audit",
    "exchange",
]

# Messages live in the session (server side), not in a signed cookie a browser can read.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.ContentSecurityPolicyMiddleware",
    "core.middleware.DatabaseUnavailableMiddleware",
    "core.middleware.ApiBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite is the zero-setup default: wait for the write lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
        "EXCHANGE_DB_SKIP_BUSY_HEALTH_CHECK", False
    ):
        # Opt-in: Django's backend without the health check's SELECT 1 on a connection used
        # moments ago (core/postgresql/base.py; docs/operations.md).
        DATABASES["default"]["ENGINE"] = "core.postgresql"
    if env_bool("DB_SERVER_SIDE_BINDING", True):
        # Parameters sent apart from the SQL (no quoting in Python), and each statement prepared by
        # psycopg once a connection has run it DB_PREPARE_THRESHOLD times: less CPU in the app and
        # in PostgreSQL (docs/performance.md). 0 turns preparing off (PgBouncer in transaction mode
        # without prepared-statement support: docs/scaling.md).
        DATABASES["default"]["OPTIONS"].setdefault("server_side_binding", True)
        DATABASES["default"]["OPTIONS"].setdefault(
            "prepare_threshold", env_int("DB_PREPARE_THRESHOLD", 5, minimum=0) or None
        )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# HTTPS: on by default in production; a proxy in front may take it over (SECURE_SSL_REDIRECT=0).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 8 * 3600
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp) of the pages: the console and the interactive API docs.
# Scripts only from this origin (no inline script anywhere: Swagger UI's set-up script is served
# as a file); inline styles are allowed, as the console's templates and Swagger UI use them.
# The API's own answers get a policy that allows nothing (core.middleware.API_POLICY).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
EXCHANGE_CSP_PAGES = ("/api/v1/docs",)  # API paths that are pages, under the pages' policy
DATA_UPLOAD_MAX_MEMORY_SIZE = EXCHANGE_MAX_JSON_BODY

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["members.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["members.permissions.IsActiveMember"],
    "DEFAULT_THROTTLE_CLASSES": [],  # the member rate is checked first thing in IsActiveMember (members/limits.py)
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.negotiation.AuthenticateFirst",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "members.refusals.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Credit-information exchange API",
    "DESCRIPTION": "Members share delinquency records and query borrower summaries under consent.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.schema.document_problems"],
    "ENUM_NAME_OVERRIDES": {
        "RecordStatusEnum": "exchange.models.RecordStatus",
        "DisputeStatusEnum": "exchange.models.DisputeStatus",
        "SubmissionStatusEnum": "exchange.models.SubmissionStatus",
        "MemberStatusEnum": "members.models.MemberStatus",
        "MemberKindEnum": "members.models.MemberKind",
        "ScopeEnum": "members.models.Scope",
        "SubmissionFormatEnum": "exchange.models.SubmissionFormat",
        "ConsentStatusEnum": "exchange.models.ConsentStatus",
        "IdTypeEnum": "exchange.models.IdType",
        "ProductEnum": "exchange.models.Product",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "core.logging.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stdout"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's request logger would print request paths and bodies' errors: keep its level
        # but route it through the same JSON formatter.
        "django.server": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        "axes": {"level": "WARNING"},  # its start-up banner on every command is noise
    },
}

# --- Bulk submissions and background tasks (exchange/bulk/, exchange/tasks.py) -------------
# Django's tasks API through the django-tasks backport; the default backend keeps tasks in this
# database (worker: `manage.py run_worker`). A deployment swaps it by setting only, e.g.
# EXCHANGE_TASKS_BACKEND=django_tasks_rq.RQBackend (and runs that backend's workers).
INSTALLED_APPS += ["django_tasks", "django_tasks_db"]
TASKS = {"default": {"BACKEND": env_str("EXCHANGE_TASKS_BACKEND", "django_tasks_db.DatabaseBackend")}}
# Uploaded files wait here until processed (then they are deleted: they hold raw identifiers).
EXCHANGE_SUBMISSIONS_DIR = Path(env_str("EXCHANGE_SUBMISSIONS_DIR", str(BASE_DIR / "var" / "submissions")))
EXCHANGE_BULK_CHUNK_ROWS = env_int("EXCHANGE_BULK_CHUNK_ROWS", 5000, minimum=1)
# A file stops (failed, too_many_errors) at one rejected row more than this.
EXCHANGE_MAX_ROW_ERRORS = env_int("EXCHANGE_MAX_ROW_ERRORS", 1000, minimum=0)
# Bytes of one member's files waiting to be processed; past it an upload gets 429. 0: no limit.
EXCHANGE_MAX_QUEUED_BYTES = env_int("EXCHANGE_MAX_QUEUED_BYTES", 4 * 1024**3, minimum=0)
# A worker's claim on a submission; renewed with every chunk, taken over once it lapses.
EXCHANGE_SUBMISSION_LEASE_SECONDS = env_int("EXCHANGE_SUBMISSION_LEASE_SECONDS", 300, minimum=1)
# --- end of bulk submissions block ------------------------------------------------------------

# --- Staff console: log-in lock-out (django-axes) -----------------------------------------------
# 5 failed log-ins from one address, or for one user name, lock that address or name out for
# 15 minutes (each further try restarts the clock); a success clears the count. Failures and
# lock-outs are also audited (members/staff_login.py). The API authenticates by bearer key, not
# through django.contrib.auth, so axes never sees or throttles API calls. Behind a proxy, set
# AXES_IPWARE_PROXY_COUNT (and install django-ipware) so the client's address is the one counted.
from datetime import timedelta  # noqa: E402

INSTALLED_APPS += ["axes"]
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last, as axes documents
AUTHENTICATION_BACKENDS = [
    "members.staff_login.StaffLockoutBackend",  # axes' check first, before any password is tried
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
# --- end of staff console block -----------------------------------------------------------------

# --- Consent assurance and compliance alerts (exchange/evidence.py, exchange/alerts.py) ---------
EXCHANGE_EVIDENCE_DAYS = env_int("EXCHANGE_EVIDENCE_DAYS", 10, minimum=1)
EXCHANGE_ALERT_SUBJECTS_PER_HOUR = env_int("EXCHANGE_ALERT_SUBJECTS_PER_HOUR", 200, minimum=1)
EXCHANGE_ALERT_DENIALS_PER_HOUR = env_int("EXCHANGE_ALERT_DENIALS_PER_HOUR", 20)
EXCHANGE_ALERT_DISPUTES_PER_DAY = env_int("EXCHANGE_ALERT_DISPUTES_PER_DAY", 20)
# How often run_worker marks overdue evidence requests and evaluates the alert rules.
EXCHANGE_ALERT_INTERVAL_SECONDS = env_int("EXCHANGE_ALERT_INTERVAL_SECONDS", 300, minimum=10)
# The console's address, for the links in alert e-mails (empty: the e-mails give paths only).
EXCHANGE_CONSOLE_URL = env_str("EXCHANGE_CONSOLE_URL", "")
# Alert e-mails go through Django's mail framework: printed to the console in development.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "exchange@localhost")
# --- end of consent assurance block ---------------------------------------------------------------
