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


def _bind_integers_as_bigint(sender, connection, **kwargs) -> None:
    """PostgreSQL: every Python int goes as a bigint. psycopg would pick int2, int4 or int8 by
    each value's size, so a tick's statement with other counts would have other parameter
    types: another statement to psycopg and PostgreSQL, parsed and planned anew instead of
    prepared (envconfig.POSTGRES_BINDING). The counter columns are bigints anyway."""
    if connection.vendor != "postgresql":
        return
    from psycopg.types.numeric import Int8BinaryDumper, Int8Dumper

    adapters = connection.connection.adapters
    adapters.register_dumper(int, Int8Dumper)
    adapters.register_dumper(int, Int8BinaryDumper)


class MetricsConfig(AppConfig):
    name = "metrics"
    verbose_name = "Traffic metrics"

    def ready(self) -> None:
        connection_created.connect(_hand_sqlite_files_to_sudo_user)
        connection_created.connect(_bind_integers_as_bigint)
