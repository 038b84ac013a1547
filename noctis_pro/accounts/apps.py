from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "noctis_pro.accounts"
    label = "accounts"
