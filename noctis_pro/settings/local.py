"""Local (`make run`, manage.py) settings: the .env that `make run` wrote supplies the secrets."""

from noctis_pro.core.config import check_secret_key
from noctis_pro.settings.base import *  # noqa: F403
from noctis_pro.settings.base import DEBUG, SECRET_KEY, required

SECRET_KEY = SECRET_KEY or required("DJANGO_SECRET_KEY")
check_secret_key(SECRET_KEY, debug=DEBUG)
WEBHOOK_SECRET = required("WEBHOOK_SECRET")
