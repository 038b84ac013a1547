"""Production (containers): secrets required, secure cookies behind nginx's TLS."""

from noctis_pro.core.config import check_secret_key
from noctis_pro.settings.base import *  # noqa: F403
from noctis_pro.settings.base import env, required

DEBUG = False
SECRET_KEY = required("DJANGO_SECRET_KEY")
check_secret_key(SECRET_KEY, debug=False)
WEBHOOK_SECRET = required("WEBHOOK_SECRET")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
