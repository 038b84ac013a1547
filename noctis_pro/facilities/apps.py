from django.apps import AppConfig


class FacilitiesConfig(AppConfig):
    name = "noctis_pro.facilities"
    label = "facilities"

    def ready(self) -> None:
        from noctis_pro.facilities.receivers import on_studies_indexed
        from noctis_pro.pacs.signals import studies_indexed

        studies_indexed.connect(on_studies_indexed, dispatch_uid="facilities.assign_studies")
