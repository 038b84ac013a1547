"""NoctisPro: the Django project package.

The Celery app lives in noctis_pro/celery.py (`celery -A noctis_pro` finds it there). It is not imported here,
so that fastapi_app can import noctis_pro.contracts without loading Celery or Django.
"""
