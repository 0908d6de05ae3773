from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """Rules on what the sampler writes, the alerts they open and close, and their notices."""

    name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from alerts import quota_rules  # noqa: F401  (connects its signal receivers)
