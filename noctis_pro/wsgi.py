"""WSGI entry point for gunicorn: `gunicorn noctis_pro.wsgi:application`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "noctis_pro.settings.local")
application = get_wsgi_application()
