"""The viewer group: may see the dashboard, the API and /metrics, not the admin."""

from django.db import migrations


def make_viewer_group(apps, schema_editor) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    # Permissions are otherwise made after all migrations (post_migrate): make this one now.
    content_type, _ = ContentType.objects.get_or_create(app_label="access", model="apitoken")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="view_traffic",
        defaults={"name": "Can see the dashboard, the API and /metrics"},
    )
    group, _ = Group.objects.get_or_create(name="viewer")
    group.permissions.add(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0001_api_tokens"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(make_viewer_group, migrations.RunPython.noop)]
