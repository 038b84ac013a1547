from django.apps import AppConfig


class AiConfig(AppConfig):
    name = "noctis_pro.ai"
    label = "ai"

    def ready(self) -> None:
        from noctis_pro.ai.receivers import on_studies_indexed
        from noctis_pro.pacs.signals import studies_indexed

        studies_indexed.connect(on_studies_indexed, dispatch_uid="ai.queue_analyses")
