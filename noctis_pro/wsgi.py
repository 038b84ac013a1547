"""WSGI entry point for gunicorn: `gunicorn noctis_pro.wsgi:application`."""

import os

from django.core.wsgi import get_wsgi_application

from noctis_pro.core.config import settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "noctis_pro.settings.local")
settings_or_exit("django")
application = get_wsgi_application()
