from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "noctis_pro.exports"
    label = "exports"
