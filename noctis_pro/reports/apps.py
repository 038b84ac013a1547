from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "noctis_pro.reports"
    label = "reports"
