from django.apps import AppConfig


class PacsConfig(AppConfig):
    name = "noctis_pro.pacs"
    label = "pacs"
