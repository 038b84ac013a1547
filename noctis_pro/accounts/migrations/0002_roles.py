"""The roles of the design (admin, radiologist, technologist, referrer) as Django groups, without permissions yet."""

from django.db import migrations

ROLES = ("admin", "radiologist", "technologist", "referrer")


def roles_create(apps, schema_editor):
    group = apps.get_model("auth", "Group")
    for name in ROLES:
        group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(roles_create, migrations.RunPython.noop)]
