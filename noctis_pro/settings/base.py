"""Settings shared by every environment, read from the environment (12-factor) and the project's .env.

Names are the shared vocabulary: DATABASE_URL REDIS_URL STORAGE_ROOT WEBHOOK_SECRET DJANGO_SECRET_KEY ...
Secrets have no default: a missing one stops the process at start with one line saying which.
"""

from pathlib import Path

import environ

from noctis_pro.core.config import ConfigError

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# .env is written by `make run` (NOCTIS_ENV_FILE points elsewhere, e.g. in tests); real environment wins.
environ.Env.read_env(env.str("NOCTIS_ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)


def required(name: str) -> str:
    value = env.str(name, default="")
    if not value:
        raise ConfigError(f"{name} is not set: it has no default (see .env.example)")
    return value


DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "noctis_pro.core",
    "noctis_pro.accounts",
    "noctis_pro.pacs",
    "noctis_pro.worklist",
    "noctis_pro.reports",
    "noctis_pro.ai",
    "noctis_pro.exports",
    "noctis_pro.retention",
    "noctis_pro.facilities",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "noctis_pro.core.middleware.DomainErrorMiddleware",
]

ROOT_URLCONF = "noctis_pro.urls"
WSGI_APPLICATION = "noctis_pro.wsgi.application"
ASGI_APPLICATION = "noctis_pro.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "noctis_pro" / "templates"],
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

DATABASES = {"default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/noctis")}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ConfigError("DATABASE_URL must be a postgres:// URL: NoctisPro runs on PostgreSQL")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

# Django's model backend plus every admin permission for the admin role (group "admin"), see accounts/backends.py.
AUTHENTICATION_BACKENDS = ["noctis_pro.accounts.backends.RoleBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "worklist:index"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "noctis_pro" / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media")))

# Where the SCP and STOW-RS write instances: <StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm
STORAGE_ROOT = Path(env.str("STORAGE_ROOT", default=str(BASE_DIR / "var" / "storage")))
WEBHOOK_SECRET = env.str("WEBHOOK_SECRET", default="")
# Anonymised export ZIPs (not under MEDIA_ROOT: they are handed out only to their owner) and how long they last.
EXPORT_ROOT = Path(env.str("EXPORT_ROOT", default=str(BASE_DIR / "var" / "exports")))
EXPORT_TTL_HOURS = env.int("EXPORT_TTL_HOURS", default=24)
# Our AE title: the SCP answers to it, and forwarding (pacs.forwarding) calls other nodes with it.
DICOM_AE_TITLE = env.str("DICOM_AE_TITLE", default="NOCTIS")
DICOM_PORT = env.int("DICOM_PORT", default=11112)  # the SCP's; shown to admins registering us on other nodes
# Receipts not indexed this many seconds after arrival are indexed by the reconciler (a lost webhook).
RECONCILE_AFTER_SECONDS = env.int("RECONCILE_AFTER_SECONDS", default=5)
# A receipt whose data stays unusable is retried by the reconciler this many times, then left for a human.
MAX_INDEX_ATTEMPTS = env.int("MAX_INDEX_ATTEMPTS", default=5)

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task leaves the task for another
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "reconcile-receipts": {"task": "noctis_pro.pacs.tasks.reconcile_receipts", "schedule": 2.0},
    "exports-expire": {"task": "noctis_pro.exports.tasks.exports_expire_task", "schedule": 3600.0},
    # Applies only the policies an operator enabled after reading their dry run (manage.py retention).
    "retention-run": {"task": "noctis_pro.retention.tasks.retention_run", "schedule": 86400.0},
}

AI_POLL_SECONDS = env.float("AI_POLL_SECONDS", default=1.0)
# Analyzers queued (pending) for every study that indexing touches; empty to queue none automatically.
AI_AUTO_ANALYZERS = env.list("AI_AUTO_ANALYZERS", default=["study_inventory"])
# A pending analysis waits until its study has received nothing for this long: a study arriving in a burst of
# webhook batches is analysed once, after the burst, instead of once per processor poll while it still grows.
AI_QUIET_SECONDS = env.float("AI_QUIET_SECONDS", default=5.0)
# A running analysis whose processor has been silent this long is taken again (its processor died). The processor
# refreshes the analysis' heartbeat every AI_HEARTBEAT_SECONDS while it runs, so a long analysis is not taken twice.
AI_STUCK_AFTER_SECONDS = env.int("AI_STUCK_AFTER_SECONDS", default=60)
AI_HEARTBEAT_SECONDS = env.float("AI_HEARTBEAT_SECONDS", default=AI_STUCK_AFTER_SECONDS / 4)
# Analyzer plugins ("module:Class") beside the built-in ones and the "noctis_pro.analyzers" entry points.
AI_ANALYZER_PLUGINS = env.list("AI_ANALYZER_PLUGINS", default=[])
# ONNX model configs (JSON, see noctis_pro/ai/analyzers/onnx_runner.py): one analyzer each.
AI_ONNX_MODELS = env.list("AI_ONNX_MODELS", default=[])
# Measurements written back as a TID 1500 SR, C-STORE to our own SCP (DICOM_PORT, DICOM_AE_TITLE).
AI_WRITEBACK = env.bool("AI_WRITEBACK", default=True)
# The SCP host as STOW-RS reaches it (docker-compose: rust_scp).
AI_WRITEBACK_HOST = env.str("AI_WRITEBACK_HOST", default=env.str("DICOM_SCP_HOST", default="127.0.0.1"))
AI_WRITEBACK_PORT = env.int("DICOM_PORT", default=11112)
AI_WRITEBACK_CALLING_AE = env.str("AI_WRITEBACK_CALLING_AE", default="NOCTIS_AI")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # pynetdicom logs every DIMSE message at INFO: a 1,000-image send would write thousands of lines.
        "pynetdicom": {"level": env.str("PYNETDICOM_LOG_LEVEL", default="WARNING")},
    },
}
