from django.apps import AppConfig


class AccessConfig(AppConfig):
    """Who may see traffic: logins, the viewer group, API tokens."""

    name = "access"
    default_auto_field = "django.db.models.BigAutoField"
