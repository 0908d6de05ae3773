from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _hand_sqlite_files_to_sudo_user(sender, connection, **kwargs) -> None:
    """The sampler runs as root: keep the database usable by the user who ran sudo."""
    if connection.vendor != "sqlite":
        return
    from pathlib import Path

    from netmetrics.sudo import give_to_invoking_user

    db = Path(connection.settings_dict["NAME"])
    give_to_invoking_user(db, Path(f"{db}-wal"), Path(f"{db}-shm"))


class MetricsConfig(AppConfig):
    name = "metrics"
    verbose_name = "Traffic metrics"

    def ready(self) -> None:
        connection_created.connect(_hand_sqlite_files_to_sudo_user)
