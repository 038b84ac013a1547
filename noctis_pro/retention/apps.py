from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "noctis_pro.retention"
    label = "retention"
