"""Database helpers for the hot paths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models


def update_by_id(model: type[models.Model], column: str, values: Mapping[Any, Any], *, add: bool = False) -> int:
    """Set one column of several rows, each to its own value (or add each its own amount, `add`):
    one UPDATE joined to a VALUES list (PostgreSQL: to unnested arrays), `{pk: value}`. Returns the
    rows updated.

    What Django's `Case(When(...))` (and `bulk_update`) do, for a fraction of the CPU: the ORM
    resolved and compiled every When separately, more than the database took to run the update.
    """
    return update_columns_by_id(model, (column,), {key: (value,) for key, value in values.items()}, add=add)


def update_columns_by_id(
    model: type[models.Model], columns: Sequence[str], values: Mapping[Any, Sequence[Any]], *, add: bool = False
) -> int:
    """`update_by_id` of several columns at once: `{pk: (value of each column, …)}`, one UPDATE
    (one new version of each row, not one per column)."""
    if not values:
        return 0
    fields = [model._meta.get_field(column) for column in columns]
    pk = model._meta.pk
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    names = [f"v{i}" for i in range(len(fields))]
    sets = ", ".join(
        f"{quote(f.column)} = {quote(f.column)} + v.{n}" if add else f"{quote(f.column)} = v.{n}"
        for f, n in zip(fields, names, strict=True)
    )
    if connection.vendor == "postgresql":
        # One array parameter a column, whatever the number of rows: psycopg parses a query of
        # thousands of placeholders in Python, slower than the UPDATE itself (bench/era.py).
        casts = [f"CAST(%s AS {pk.db_type(connection)}[])"] + [f"CAST(%s AS {f.db_type(connection)}[])" for f in fields]
        rows = f"unnest({', '.join(casts)}) AS v (id, {', '.join(names)})"
        params: list[Any] = [[pk.get_db_prep_value(key, connection) for key in values]] + [
            [f.get_db_prep_save(row[i], connection) for row in values.values()] for i, f in enumerate(fields)
        ]
    else:  # SQLite names a VALUES list's columns column1, column2… (and counts rows only after UPDATE)
        aliases = ", ".join(f"column{i + 2} AS {n}" for i, n in enumerate(names))
        one = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
        rows = f"(SELECT column1 AS id, {aliases} FROM (VALUES {', '.join([one] * len(values))})) AS v"
        params = []
        for key, row in values.items():
            params.append(pk.get_db_prep_value(key, connection))
            params += [f.get_db_prep_save(value, connection) for f, value in zip(fields, row, strict=True)]
    sql = f"UPDATE {table} SET {sets} FROM {rows} WHERE {table}.{quote(pk.column)} = v.id"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert_rows(model: type[models.Model], objs: Sequence[models.Model], *, batch_size: int = 2000) -> int:
    """Insert new rows without reading their ids back: COPY on PostgreSQL (bench/era.py: 100k
    receipts), `bulk_create` elsewhere. Fields' `pre_save` runs (auto_now); no signals, like bulk_create.
    Returns the rows written."""
    if not objs:
        return 0
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs, batch_size=batch_size)
        return len(objs)
    from psycopg.types.json import Jsonb

    fields = [f for f in model._meta.concrete_fields if not f.primary_key and not getattr(f, "generated", False)]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN") as copy:
            for obj in objs:
                copy.write_row(
                    [
                        Jsonb(f.pre_save(obj, True)) if f.attname in json_fields else f.pre_save(obj, True)
                        for f in fields
                    ]
                )
    return len(objs)
