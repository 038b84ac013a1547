from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "noctis_pro.accounts"
    label = "accounts"

    def ready(self) -> None:
        from django.contrib import admin

        from noctis_pro.accounts.roles import admin_site_has_permission

        # The default site lets in any is_staff user; the admin role decides instead (contracts.roles).
        admin.site.has_permission = admin_site_has_permission  # type: ignore[method-assign]
