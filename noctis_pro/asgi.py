"""ASGI entry point (unused by default; gunicorn serves WSGI, FastAPI serves /ws)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "noctis_pro.settings.local")
application = get_asgi_application()
