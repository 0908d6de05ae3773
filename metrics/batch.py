"""Writing many rows of some 90 columns in one statement: a tick's samples, buckets and runs.

Django compiles an UPDATE anew for every QuerySet.update() or save(), bulk_update() builds a
CASE per column over all rows, and bulk_create() prepares each value through its field: at 50
interfaces that work was most of a 270 ms tick. The statements built here once per call, with
numbers passed to the driver as they are, do the same writes in a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper

# Fields whose Python values (int, float) every driver takes unprepared.
NUMBERS = (models.IntegerField, models.FloatField)
# A statement's parameters at most: PostgreSQL's protocol counts them in 16 bits, which
# Django's bulk_batch_size leaves to the caller (it knows SQLite's own, lower limit).
MAX_PARAMETERS = 65_535


def update_rows(
    model: type[models.Model], objects: Sequence[models.Model], names: Sequence[str]
) -> None:
    """Write the fields `names` of each of `objects` (saved rows of `model`) from its attributes."""
    if not objects:
        return
    meta = model._meta
    concrete = _fields(model, names)
    assert meta.pk is not None
    db = connections[router.db_for_write(model)]
    quote = db.ops.quote_name
    columns = ", ".join(f"{quote(_column(field))} = %s" for field in concrete)
    sql = f"UPDATE {quote(meta.db_table)} SET {columns} WHERE {quote(_column(meta.pk))} = %s"
    params = [[*_values(obj, concrete, db), obj.pk] for obj in objects]
    with db.cursor() as cursor:
        cursor.executemany(sql, params)


def insert_rows(model: type[models.Model], objects: Sequence[models.Model]) -> None:
    """INSERT `objects` (new rows of `model`, whose primary key is automatic) and set their
    primary keys, from RETURNING: in as few statements as the database's parameter limit
    allows, in order (as bulk_create relies on, on SQLite and PostgreSQL alike)."""
    meta = model._meta
    assert meta.pk is not None
    db = connections[router.db_for_write(model)]
    returning = f" RETURNING {db.ops.quote_name(_column(meta.pk))}"
    with db.cursor() as cursor:
        for batch, sql, params in _inserts(model, objects, db):
            cursor.execute(sql + returning, params)
            for obj, (pk,) in zip(batch, cursor.fetchall(), strict=True):
                obj.pk = pk
                obj._state.adding = False
                obj._state.db = db.alias


def add_rows(
    model: type[models.Model],
    objects: Sequence[models.Model],
    key: Sequence[str],
    summed: Sequence[str],
    maxed: Sequence[str],
) -> None:
    """INSERT `objects` (new rows of `model`), or where a row with the same `key` (a unique
    constraint's fields) is there, add their `summed` fields to its and keep the larger of
    their `maxed` fields: one upsert, whether the rows exist or not. No two objects may share
    a key (PostgreSQL will not update a row twice in one statement)."""
    db = connections[router.db_for_write(model)]
    meta = model._meta
    quote = db.ops.quote_name
    table = quote(meta.db_table)
    names = (*key, *summed, *maxed)
    columns = dict(zip(names, (quote(_column(f)) for f in _fields(model, names)), strict=True))
    larger = "GREATEST" if db.vendor == "postgresql" else "MAX"  # SQLite's MAX of two values
    updates = [f"{columns[n]} = {table}.{columns[n]} + EXCLUDED.{columns[n]}" for n in summed]
    updates += [
        f"{columns[n]} = {larger}({table}.{columns[n]}, EXCLUDED.{columns[n]})" for n in maxed
    ]
    conflict = (
        f" ON CONFLICT ({', '.join(columns[n] for n in key)}) DO UPDATE SET {', '.join(updates)}"
    )
    with db.cursor() as cursor:
        for _, sql, params in _inserts(model, objects, db):
            cursor.execute(sql + conflict, params)


def _inserts(
    model: type[models.Model], objects: Sequence[models.Model], db: BaseDatabaseWrapper
) -> Iterator[tuple[Sequence[models.Model], str, list]]:
    """The INSERT ... VALUES statements of objects (new rows of model, primary key automatic),
    as few as the database's parameter limit allows: each batch, its SQL and parameters."""
    meta = model._meta
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    quote = db.ops.quote_name
    columns = ", ".join(quote(_column(field)) for field in fields)
    row = f"({', '.join(['%s'] * len(fields))})"
    size = max(1, min(db.ops.bulk_batch_size(fields, list(objects)), MAX_PARAMETERS // len(fields)))
    for first in range(0, len(objects), size):
        batch = objects[first : first + size]
        yield (
            batch,
            f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES "
            f"{', '.join([row] * len(batch))}",
            [value for obj in batch for value in _values(obj, fields, db)],
        )


def _values(obj: models.Model, fields: Sequence[models.Field], db: BaseDatabaseWrapper) -> list:
    """The object's values of `fields`, ready for the driver. Numbers go as they are:
    preparing each of some 10,000 values a tick through its field (and the thread-local
    connection proxy) cost more than the statement itself."""
    return [
        value if isinstance(field, NUMBERS) else field.get_db_prep_save(value, db)
        for field, value in ((field, getattr(obj, field.attname)) for field in fields)
    ]


def _fields(model: type[models.Model], names: Sequence[str]) -> list[models.Field]:
    """The model's fields of these names, which must all be columns."""
    fields = [model._meta.get_field(name) for name in names]
    concrete = [field for field in fields if isinstance(field, models.Field)]
    assert len(concrete) == len(fields), names  # columns only
    return concrete


def _column(field: models.Field) -> str:
    assert field.column is not None  # a concrete field has its column
    return field.column
