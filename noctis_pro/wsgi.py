"""WSGI entry point for gunicorn: `gunicorn noctis_pro.wsgi:application`."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from noctis_pro.core.config import settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "noctis_pro.settings.local")
settings_or_exit("django")
application = get_wsgi_application()
# Import the URLconf, and every view and service it reaches, while the worker boots: otherwise each worker's
# first request pays it (~0.25 s of CPU, pynetdicom included), which is the first webhook call of the first burst.
get_resolver().url_patterns  # noqa: B018
