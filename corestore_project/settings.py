"""Settings for corestore, read once from the CORESTORE_* environment.

Every variable is read here, through django-environ, with a type and a default.
A bad value stops start-up with one line naming the variable.
"""

import ipaddress
import sys
from pathlib import Path

import environ

from corestore_project import derive

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


class SettingError(SystemExit):
    """A bad CORESTORE_* value: exits with one clear line instead of a traceback."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"corestore: bad setting {name}: {problem}")


def _read(name, cast, default):
    try:
        return cast(name, default=default)
    except (ValueError, TypeError) as exc:
        raise SettingError(name, str(exc)) from None


def _port(name, default):
    value = _read(name, env.int, default)
    if not 0 <= value <= 65535:
        raise SettingError(name, f"{value} is not a TCP port (0-65535)")
    return value


def _choice(name, default, choices):
    value = _read(name, env.str, default).strip().lower()
    if value not in choices:
        raise SettingError(name, f"{value!r} is not one of {', '.join(choices)}")
    return value


DATA_DIR = Path(_read("CORESTORE_DATA_DIR", env.str, "/data/corestore")).absolute()
BIND_ADDRESS = _read("CORESTORE_BIND_ADDRESS", env.str, "0.0.0.0")
try:
    ipaddress.ip_address(BIND_ADDRESS)
except ValueError:
    raise SettingError(
        "CORESTORE_BIND_ADDRESS", f"{BIND_ADDRESS!r} is not an IP address"
    ) from None
PUBLIC_HOST = _read("CORESTORE_PUBLIC_HOST", env.str, "corestore")
CONTROL_PORT = _port("CORESTORE_CONTROL_PORT", 3000)
S3_PORT = _port("CORESTORE_S3_PORT", 9000)
DB_PORT = _port("CORESTORE_DB_PORT", 27017)
FLOWER_PORT = _port("CORESTORE_FLOWER_PORT", 5555)
REGION = _read("CORESTORE_REGION", env.str, "us-east-1")
API_TOKEN = _read("CORESTORE_API_TOKEN", env.str, "") or None
VOLUME_PLUGIN_SOCKET = Path(
    _read(
        "CORESTORE_VOLUME_PLUGIN_SOCKET",
        env.str,
        "/run/docker/plugins/corestore.sock",
    )
)
ARCHIVE_PASSPHRASE = _read("CORESTORE_ARCHIVE_PASSPHRASE", env.str, "") or None
# Snapshot and restore jobs are stopped after this many seconds.
JOB_TIME_LIMIT = _read("CORESTORE_JOB_TIME_LIMIT", env.int, 6 * 3600)
if JOB_TIME_LIMIT < 60:
    raise SettingError("CORESTORE_JOB_TIME_LIMIT", "must be at least 60 seconds")
DB_ENGINE = _choice("CORESTORE_DB_ENGINE", "auto", ("auto", "mongod", "secantus"))
S3_ENGINE = _choice("CORESTORE_S3_ENGINE", "auto", ("auto", "minio", "rclone"))
# Named with SECRET: Celery masks settings by name when Flower shows a worker's
# configuration, and FLOWER_BASIC_AUTH would be shown in clear.
FLOWER_AUTH_SECRET = _read("CORESTORE_FLOWER_BASIC_AUTH", env.str, "") or None
if FLOWER_AUTH_SECRET and ":" not in FLOWER_AUTH_SECRET:
    raise SettingError("CORESTORE_FLOWER_BASIC_AUTH", "expected user:password")
ADMIN_PASSWORD = _read("CORESTORE_ADMIN_PASSWORD", env.str, "") or None
LOG_FORMAT = _choice("CORESTORE_LOG_FORMAT", "text", ("text", "json"))
LOG_LEVEL = _choice(
    "CORESTORE_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
).upper()

# The master secret comes from the environment or from <data>/master.secret,
# which `manage.py runstack` creates before any other process starts. Reading it
# here never writes: a missing file leaves it None until the stack creates it.
MASTER_SECRET_ENV = _read("CORESTORE_MASTER_SECRET", env.str, "") or None
try:
    MASTER_SECRET = derive.read_master_secret(DATA_DIR, MASTER_SECRET_ENV)
except derive.MasterSecretError as exc:
    raise SettingError("CORESTORE_MASTER_SECRET", str(exc)) from None

RUN_DIR = DATA_DIR / "run"
# prometheus-client's multiprocess files, emptied at every stack start.
METRICS_DIR = RUN_DIR / "metrics"
LOG_DIR = DATA_DIR / "log"
REDIS_SOCKET = RUN_DIR / "redis.sock"

SECRET_KEY = derive.derive(MASTER_SECRET or "unset", "django-secret-key", "node")
DEBUG = False
ALLOWED_HOSTS = ["*"]

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
    "corestore_project",
    "provisioning",
    "volumes",
    "snapshots",
]

MIDDLEWARE = [
    "corestore_project.metrics.HttpMetricsMiddleware",
    "corestore_project.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The volume plugin serves the same project on its own socket, with only the
# VolumeDriver routes (see corestore_project/plugin_wsgi.py).
ROOT_URLCONF = env.str("CORESTORE_URLCONF", default="corestore_project.urls")
WSGI_APPLICATION = "corestore_project.wsgi.application"
APPEND_SLASH = False

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

try:
    DATABASES = {
        "default": env.db_url(
            "DATABASE_URL",
            default=f"sqlite:///{DATA_DIR / 'corestore.sqlite3'}",
        )
    }
except (ValueError, KeyError, environ.ImproperlyConfigured) as exc:
    raise SettingError("DATABASE_URL", str(exc)) from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the API, the worker and the plugin read while one of them writes;
    # IMMEDIATE transactions take the write lock up front instead of failing
    # with "database is locked" when two writers upgrade at once.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# Served by whitenoise from the API process (admin and API docs assets). Plain
# storage: compressing every file would add seconds to each stack start.

DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "corestore_project.api.JsonBodyParser",
        "corestore_project.api.AnyTypeJsonParser",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["corestore_project.api.BearerTokenPermission"],
    "EXCEPTION_HANDLER": "corestore_project.api.json_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "corestore control API",
    "DESCRIPTION": (
        "Node-local storage for workload services: MongoDB databases, S3 "
        "buckets, Docker volumes, and their snapshots."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SECURITY": [{"bearerAuth": []}],
    "APPEND_COMPONENTS": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    },
    "PREPROCESSING_HOOKS": ["corestore_project.openapi.drop_lookahead_groups"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "corestore_project.openapi.complete_schema",
    ],
    # One name per choice set that several answers share.
    "ENUM_NAME_OVERRIDES": {
        "CapabilityEnum": "corestore_project.api_schema.CAPABILITIES",
        "SnapshotCapabilityEnum": "corestore_project.api_schema.SNAPSHOT_CAPABILITIES",
        "ServiceStatusEnum": "corestore_project.api_schema.SERVICE_STATUSES",
        "ResourceStatusEnum": "corestore_project.api_schema.RESOURCE_STATUSES",
        "JobStatusEnum": "corestore_project.api_schema.JOB_STATUSES",
        "JobKindEnum": "corestore_project.api_schema.JOB_KINDS",
    },
}

CELERY_BROKER_URL = f"redis+socket://{REDIS_SOCKET}"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The worker logs through LOGGING below, in the same text or JSON format as
# the API, instead of Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "corestore_project.logs.TextFormatter",
        },
        "json": {
            "()": "corestore_project.logs.JsonFormatter",
        },
    },
    "filters": {
        "context": {"()": "corestore_project.logs.ContextFilter"},
        "tracebacks_only": {"()": "corestore_project.logs.TracebackOnlyFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": sys.stderr,
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "django.request": {"filters": ["tracebacks_only"]},
    },
}
