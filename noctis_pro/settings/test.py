"""pytest settings: the real PostgreSQL and Redis named by DATABASE_URL / REDIS_URL (set by `make test`)."""

from noctis_pro.settings.base import *  # noqa: F403
from noctis_pro.settings.base import env

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="test-only-secret-key-not-for-any-deployment-0123456789")
WEBHOOK_SECRET = env.str("WEBHOOK_SECRET", default="test-webhook-secret")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast hashing in tests only
DATABASES["default"]["CONN_MAX_AGE"] = 0
AI_QUIET_SECONDS = 0.0  # tests index, then run the processor at once; test_ai_processing sets it to check the wait
AI_WRITEBACK = env.bool("AI_WRITEBACK", default=False)  # no SCP in the integration tests; e2e runs the stack
