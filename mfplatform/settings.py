"""Django settings, read from the environment (see the configuration table in the README)."""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def local_secret_key(path: Path) -> str:
    """A random key made once and kept in var/, so local commands need neither DEBUG nor a
    SECRET_KEY; only the embedded (local) database gets one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)
_DEFAULT_SECRET_KEY = "insecure-development-key-change-me"
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY and not os.environ.get("DATABASE_URL"):
    SECRET_KEY = local_secret_key(VAR_DIR / "secret_key")
elif not SECRET_KEY:
    SECRET_KEY = _DEFAULT_SECRET_KEY
if not DEBUG and SECRET_KEY == _DEFAULT_SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is the default development key while DEBUG is off: set SECRET_KEY "
        "(a deployment with DATABASE_URL needs its own; DEBUG=1 for local development)."
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "mfplatform.ops.admin_apps.ConsoleAdminConfig",  # django.contrib.admin with the console
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "mfplatform.ops",
    "tenants",
    "mfplatform.catalog",
    "mfplatform.training",
    "mfplatform.registry",
    "mfplatform.experiments",
    "mfplatform.serving",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenants.middleware.AdminTenantMiddleware",
    "mfplatform.input_guard.UrlInputGuardMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mfplatform.urls"
WSGI_APPLICATION = "mfplatform.wsgi.application"
ASGI_APPLICATION = "mfplatform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "mfplatform" / "templates"],
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

# Database: DATABASE_URL (any Postgres with pgvector), else the embedded pgserver under var/.
# Persistent connections (seconds): serving does many short queries, and a new Postgres backend
# per request costs more than the request. A reused session never carries an earlier request's
# row-level security scope: tenants.db sets it from the running code's before every statement.
# Ten minutes: a session keeps serving's prepared statements and each served tenant's table
# metadata, which a new session builds again for every tenant it meets.
CONN_MAX_AGE = int(os.environ.get("CONN_MAX_AGE", "600"))
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.config(conn_max_age=CONN_MAX_AGE,
                                                   conn_health_checks=True)}
else:
    from mfplatform.embedded_db import database_settings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    DATABASES = {"default": database_settings(VAR_DIR / "pgdata")}
# Row-level security bypass key (tenants.rls): production sets it (and creates the database's
# check with its hash, see README); the embedded database generates one next to its data.
RLS_BYPASS_KEY = os.environ.get("RLS_BYPASS_KEY", "")
if not RLS_BYPASS_KEY and (VAR_DIR / "rls-bypass.key").exists():
    RLS_BYPASS_KEY = (VAR_DIR / "rls-bypass.key").read_text().strip()
DATABASES["default"].setdefault("TEST", {})
# PostgreSQL with the tenant scope kept in step on the session (row-level security).
DATABASES["default"]["ENGINE"] = "tenants.db"
# Serving's per-request statements are prepared once per session (server-binding cursors
# only: Django's own cursors bind on the client and are never prepared). Django turns this
# off for transaction-mode poolers; the session-level tenant scope needs session pooling anyway.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
# Those statements name a model version in their text, and traffic spread over many tenants
# runs each only a few times per session: planned generically from the first execution
# (Postgres makes five custom plans first), a setting of the session from its start, so no
# rollback undoes it. Nothing else is prepared (Django's cursors bind on the client).
_OPTIONS = DATABASES["default"]["OPTIONS"]
_OPTIONS["options"] = f"{_OPTIONS.get('options', '')} -c plan_cache_mode=force_generic_plan".strip()
DATABASES["default"]["CONN_MAX_AGE"] = CONN_MAX_AGE
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "media/"


def artifact_storage(kind: str) -> dict:
    """The default storage, which holds every artifact (dataset matrices, model files, CSV
    uploads): a folder on this machine (MEDIA_ROOT), or an S3-compatible bucket that web
    processes and workers on different machines share. The credentials of the bucket are
    boto3's usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or an instance role)."""
    if kind == "filesystem":
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    if kind != "s3":
        raise ImproperlyConfigured(f"ARTIFACT_STORAGE is {kind!r}: use 'filesystem' or 's3'")
    bucket = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
    if not bucket:
        raise ImproperlyConfigured("ARTIFACT_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME")
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": bucket,
        "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,  # None: AWS itself
        "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
        "location": os.environ.get("AWS_LOCATION", ""),  # a key prefix inside the bucket
        # Never replace an object under the same name: two builds of one dataset version at
        # once each keep their own file, and the loser deletes only its own.
        "file_overwrite": False,
        "default_acl": None,  # the bucket's policy decides; artifacts are never public
        # A file read from the bucket is buffered in memory up to this size, beyond in a
        # temporary file: the download's copy of a large model never doubles a process's RSS.
        "max_memory_size": int(os.environ.get("AWS_S3_MAX_MEMORY_SIZE", str(64 * 1024 * 1024))),
        "querystring_auth": True,
    }}


ARTIFACT_STORAGE = os.environ.get("ARTIFACT_STORAGE", "filesystem").strip().lower()
STORAGES = {
    "default": artifact_storage(ARTIFACT_STORAGE),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
                    if not DEBUG else "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Celery: Redis when CELERY_BROKER_URL is set, else kombu's filesystem transport under var/,
# so a real worker process runs with no extra server. Tasks write the results that matter
# to the database themselves; there is no result backend to read.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = Path(os.environ.get("CELERY_BROKER_DIR", VAR_DIR / "broker"))
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Redis hands an unacknowledged message to another worker after this long: longer than a
    # run may last (its time limit, 3600 s), so a run still going is not delivered twice
    # (a second delivery would leave it alone anyway: training.liveness.run_claim).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 7200}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Training runs (and precomputation) go to a queue per tenant size class, each with a worker
# of its own, so a small tenant never waits behind a large one (mfplatform/training/queues.py).
CELERY_TASK_ROUTES = ("mfplatform.training.queues.route_by_tenant_size",)
# A tenant with at least this many events trains on the large-tenant queue.
TRAINING_LARGE_TENANT_EVENTS = int(os.environ.get("TRAINING_LARGE_TENANT_EVENTS", "200000"))
# The dataset build streams a tenant's events out of Postgres this many rows at a time
# (mfplatform/training/event_stream.py): the bytes held before they become numpy columns.
DATASET_READ_CHUNK_ROWS = int(os.environ.get("DATASET_READ_CHUNK_ROWS", "65536"))
CELERY_TIMEZONE = TIME_ZONE

# Spark MLlib ALS (strategy "spark_als", the `spark` extra; README "Spark ALS"). The cluster a
# worker's one SparkSession connects to (local[2]: inside the worker, two threads), and the
# dataset size (interactions) above which an "als" plan trains on Spark; unset: never
# automatically, only plans that name spark_als.
SPARK_MASTER_URL = os.environ.get("SPARK_MASTER_URL", "local[2]")
SPARK_MIN_INTERACTIONS = (int(os.environ["SPARK_MIN_INTERACTIONS"])
                          if os.environ.get("SPARK_MIN_INTERACTIONS") else None)
# The default storage's root as the Spark cluster reads it (e.g. file:///mnt/media where the
# executors mount MEDIA_ROOT elsewhere); unset: derived from the storage
# (mfplatform.training.engines.spark_input_uri).
SPARK_INPUT_URI_PREFIX = os.environ.get("SPARK_INPUT_URI_PREFIX") or None

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.auth.HasTenantScope"],
    "DEFAULT_THROTTLE_CLASSES": ["tenants.auth.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": os.environ.get("API_RATE_LIMIT", "100000/min")},
    "DEFAULT_PAGINATION_CLASS": "mfplatform.api_errors.BoundedLimitOffsetPagination",
    "DEFAULT_PARSER_CLASSES": ["mfplatform.input_guard.GuardedJSONParser",
                               "mfplatform.input_guard.GuardedFormParser",
                               "mfplatform.input_guard.GuardedMultiPartParser"],
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "mfplatform.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mfplatform API",
    "DESCRIPTION": "Multi-tenant matrix-factorization recommendations.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the server's own static files: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "mfplatform.training.models.RunStatus",
        "ModelStatusEnum": "mfplatform.registry.models.ModelStatus",
        "ModelKindEnum": "mfplatform.registry.models.ModelKind",
        "EventKindEnum": "mfplatform.catalog.models.EventKind",
    },
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "mfplatform.api_errors.add_error_responses"],
}

# Training: a started run whose worker has not reported for this long is failed by the
# reaper (beat, every minute); a queued run that no worker took within the queue limit too.
TRAINING_RUN_STALE_SECONDS = float(os.environ.get("TRAINING_RUN_STALE_SECONDS", "900"))
TRAINING_RUN_QUEUE_SECONDS = float(os.environ.get("TRAINING_RUN_QUEUE_SECONDS", "86400"))
# CSV import jobs (admin): rows per chunk (the job's counts and heartbeat are written after
# each); a running job silent for the stale limit, or queued and never taken for the queue
# limit, is failed by the reaper (beat, every minute).
IMPORT_CHUNK_ROWS = int(os.environ.get("IMPORT_CHUNK_ROWS", "20000"))
IMPORT_JOB_STALE_SECONDS = float(os.environ.get("IMPORT_JOB_STALE_SECONDS", "300"))
IMPORT_JOB_QUEUE_SECONDS = float(os.environ.get("IMPORT_JOB_QUEUE_SECONDS", "86400"))
# /healthz: a worker must have answered the beat's ping within this many seconds.
WORKER_PING_MAX_AGE_SECONDS = float(os.environ.get("WORKER_PING_MAX_AGE_SECONDS", "120"))

# Registry: model versions per plan that keep their vectors (older ones keep metadata only).
MODEL_RETENTION_KEEP = int(os.environ.get("MODEL_RETENTION_KEEP", "3"))

# Serving: the session's share when a user's vector is blended with their recent items.
SERVING_SESSION_WEIGHT = float(os.environ.get("SERVING_SESSION_WEIGHT", "0.3"))
# Precompute every user's top-N after each promotion (served with ?precomputed=true).
SERVING_PRECOMPUTE = env_bool("SERVING_PRECOMPUTE", True)
# Bytes each web process may keep of the models it serves (item factors, id maps, fallbacks,
# version rows; least recently used evicted first). Sized for a 2-core box with two workers.
# Prepared statements a serving database session keeps (least recently used deallocated
# first): a few per tenant served, ~75 KB of the Postgres backend's memory each.
SERVING_PREPARED_STATEMENTS = int(os.environ.get("SERVING_PREPARED_STATEMENTS", "500"))
SERVING_CACHE_BYTES = int(os.environ.get("SERVING_CACHE_BYTES", str(512 * 1024 * 1024)))
# Seconds a tenant without a model keeps its recent-popularity list (30 days of events).
SERVING_RECENT_POPULARITY_SECONDS = float(os.environ.get("SERVING_RECENT_POPULARITY_SECONDS",
                                                         "60"))

# The cache counts API calls per key (throttling): per process unless CACHE_URL names a
# Redis that all processes share.
CACHE_URL = os.environ.get("CACHE_URL", "")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": CACHE_URL} if CACHE_URL else
          {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Seconds a verified API key is trusted without a database lookup (revocation elsewhere
# takes effect within this; 0 = look up on every call).
API_KEY_CACHE_SECONDS = float(os.environ.get("API_KEY_CACHE_SECONDS", "10"))
# Impressions (mfplatform/experiments/impressions.py): what every response showed, kept in a
# per-process buffer and written by a background thread every IMPRESSION_FLUSH_SECONDS or
# IMPRESSION_FLUSH_ROWS rows, whichever comes first; at most IMPRESSION_BUFFER_ROWS wait
# (more are dropped and counted). Off: nothing recorded (experiments get no results).
IMPRESSION_LOGGING = env_bool("IMPRESSION_LOGGING", True)
IMPRESSION_FLUSH_SECONDS = float(os.environ.get("IMPRESSION_FLUSH_SECONDS", "1"))
IMPRESSION_FLUSH_ROWS = int(os.environ.get("IMPRESSION_FLUSH_ROWS", "1000"))
IMPRESSION_BUFFER_ROWS = int(os.environ.get("IMPRESSION_BUFFER_ROWS", "100000"))
# The writer thread; tests switch it off and flush in their own thread and transaction.
IMPRESSION_BACKGROUND_FLUSH = env_bool("IMPRESSION_BACKGROUND_FLUSH", True)
IMPRESSION_RETENTION_DAYS = int(os.environ.get("IMPRESSION_RETENTION_DAYS", "90"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # kombu says this on every connection to the filesystem broker, which has no host.
    "filters": {"broker_hostname": {
        "()": "django.utils.log.CallbackFilter",
        "callback": lambda record: not record.getMessage().startswith("No hostname was supplied"),
    }},
    "loggers": {"pgserver": {"level": "WARNING"},
                "kombu.connection": {"filters": ["broker_hostname"]}},
}
