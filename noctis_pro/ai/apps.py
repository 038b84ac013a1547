from django.apps import AppConfig


class AiConfig(AppConfig):
    name = "noctis_pro.ai"
    label = "ai"
