from django.apps import AppConfig


class UsageConfig(AppConfig):
    """How much an interface carried by day, month and billing cycle, against its quota."""

    name = "usage"
    default_auto_field = "django.db.models.BigAutoField"
