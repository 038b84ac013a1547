"""The Celery app: `celery -A noctis_pro worker` and `celery -A noctis_pro beat`. Tasks are autodiscovered."""

import os

from celery import Celery

from noctis_pro.core.config import settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "noctis_pro.settings.local")
settings_or_exit("celery")

app = Celery("noctis_pro")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
