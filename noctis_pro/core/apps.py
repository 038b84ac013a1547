from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "noctis_pro.core"
    label = "core"

    def ready(self) -> None:
        # Load the Celery app so tasks queued from web processes use the configured broker.
        import noctis_pro.celery  # noqa: F401
