"""Settings of the lane's openIMIS site, read from the environment the lane script sets.

OPENIMIS_DB_NAME / _USER / _PASSWORD / _HOST / _PORT: the PostgreSQL database;
OPENIMIS_SECRET_KEY: signs sessions and tokens; OPENIMIS_LANE_TEST_GLUE=1 mounts the
test-only seeding endpoint; OPENIMIS_LANE_NO_MIGRATIONS=1 maps the modules to no
migrations (the schema step: their old migrations never create the legacy tables)."""

import os
from datetime import timedelta

from .openimisapps import openimis_apps

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET_KEY = os.environ.get("OPENIMIS_SECRET_KEY", "lane-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

# Anything but "dev" keeps the modules' session CSRF check on, as in production.
MODE = "PROD"
IS_TESTING = False
ROW_SECURITY = True
MSSQL = False
LANE_TEST_GLUE = os.environ.get("OPENIMIS_LANE_TEST_GLUE") == "1"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "graphene_django",
    "simple_history",
    "axes",
    "django_apscheduler",
    *openimis_apps(),
    "lane",
]
AUTH_USER_MODEL = "core.User"

if os.environ.get("OPENIMIS_LANE_NO_MIGRATIONS") == "1":
    MIGRATION_MODULES = {app: None for app in openimis_apps()}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "core.middleware.DefaultAxesAttributesMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "graphql_jwt.backends.JSONWebTokenBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "openIMIS.urls"
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
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("OPENIMIS_DB_NAME", "openimis"),
        "USER": os.environ.get("OPENIMIS_DB_USER", "openimis"),
        "PASSWORD": os.environ.get("OPENIMIS_DB_PASSWORD", ""),
        "HOST": os.environ.get("OPENIMIS_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("OPENIMIS_DB_PORT", "5432"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

CACHES = {
    name: {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": name}
    for name in ("default", "location", "coverage")
}
CACHE_OBJECT_DEFAULT = "default"
CACHE_OBJECT_TTL = 60 * 60

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = False
STATIC_URL = "/static/"


def SITE_ROOT() -> str:  # noqa: N802  (core calls settings.SITE_ROOT())
    return "api/"


FRONTEND_URL = "http://127.0.0.1/front"
EMAIL_HOST_USER = "lane@localhost"
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

RATELIMIT_GROUP = "lane"
RATELIMIT_KEY = "ip"
RATELIMIT_RATE = "1000/m"

PASSWORD_MIN_LENGTH = 8
PASSWORD_UPPERCASE = 0
PASSWORD_LOWERCASE = 0
PASSWORD_DIGITS = 0
PASSWORD_SYMBOLS = 0

AXES_FAILURE_LIMIT = 1000
AXES_COOLOFF_TIME = timedelta(minutes=1)

SCHEDULER_AUTOSTART = False
SCHEDULER_JOBS: list[dict] = []
SCHEDULER_CUSTOM: list[dict] = []
SCHEDULER_CONFIG = {"apscheduler.timezone": "UTC"}

CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = False

GRAPHENE = {
    "SCHEMA": "openIMIS.schema.schema",
    "MIDDLEWARE": ["graphql_jwt.middleware.JSONWebTokenMiddleware"],
}
GRAPHQL_JWT = {
    "JWT_VERIFY_EXPIRATION": True,
    "JWT_EXPIRATION_DELTA": timedelta(days=1),
    "JWT_REFRESH_EXPIRATION_DELTA": timedelta(days=30),
    "JWT_AUTH_HEADER_PREFIX": "Bearer",
    "JWT_ENCODE_HANDLER": "core.jwt.jwt_encode_user_key",
    "JWT_DECODE_HANDLER": "core.jwt.jwt_decode_user_key",
}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.jwt_authentication.JWTAuthentication"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("OPENIMIS_LOG_LEVEL", "WARNING")},
}

# The modules count login failures themselves (core's tokenAuth), not through axes.
SILENCED_SYSTEM_CHECKS = ["axes.W002", "axes.W003"]
