from django.apps import AppConfig


class WorklistConfig(AppConfig):
    name = "noctis_pro.worklist"
    label = "worklist"
