from django.apps import AppConfig


class AccessConfig(AppConfig):
    """Who may see traffic: logins, the viewer group, API tokens."""

    name = "access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from access import schema  # noqa: F401 (its OpenAPI extensions register themselves)
        from access.live import close_live_connections

        user_logged_out.connect(close_live_connections, dispatch_uid="access.live")
