"""Hot-path reads whose SQL the ORM compiles once per database instead of on every call.

Building and compiling a queryset costs more CPU than running a one-row indexed query (figures in
docs/performance.md). A `PreparedQuery` compiles its queryset once with stand-in values, remembers
which parameters they became, and on each call only binds the real values, runs the SQL and builds
the rows or model instances the way the ORM does. tests/core/test_prepared.py holds each one equal
to its queryset on both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db import connection as current_connection
from django.db.models import Field, Model, QuerySet
from django.db.models.query import get_related_populators


@dataclass(slots=True)
class _Compiled:
    sql: str
    slots: list[tuple[str | None, Any]]  # (parameter name, or None with a fixed value)
    compiler: Any
    converters: dict
    init_list: list[str]
    model_range: tuple[int, int]
    populators: list


def default_connection():
    """The default connection's wrapper itself: each attribute read through Django's `connection`
    proxy looks the wrapper up again in a context-local store."""
    return connections[DEFAULT_DB_ALIAS]


class PreparedQuery:
    """`build(**stand_ins)` returns the queryset; `params` maps each name to (stand-in value,
    model field that prepares a real value for the database, as the lookup would)."""

    def __init__(self, build: Callable[..., QuerySet], **params: tuple[Any, Field]):
        self._build = build
        self._params = params
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def _compile(self, connection=None) -> _Compiled:
        connection = connection or default_connection()
        key = (connection.alias, connection.vendor)
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled
        queryset = self._build(**{name: value for name, (value, _field) in self._params.items()})
        # The proxy, not this thread's wrapper: the compiler is shared by every thread, and its
        # converters get the connection of the thread that converts.
        compiler = queryset.query.get_compiler(connection=current_connection)
        sql, params = compiler.as_sql()
        prepared = {name: field.get_db_prep_value(value, connection) for name, (value, field) in self._params.items()}
        slots = [(next((n for n, v in prepared.items() if type(p) is type(v) and p == v), None), p) for p in params]
        missing = set(prepared) - {name for name, _value in slots}
        if missing:
            raise ImproperlyConfigured(f"prepared query: stand-ins {sorted(missing)} are not parameters of the SQL")
        select = compiler.select
        converters = compiler.get_converters([expression for expression, _sql, _alias in select[: compiler.col_count]])
        klass_info = compiler.klass_info
        init_list, model_range, populators = [], (0, 0), []
        if klass_info is not None:
            fields = klass_info["select_fields"]
            model_range = (fields[0], fields[-1] + 1)
            init_list = [column[0].target.attname for column in select[model_range[0] : model_range[1]]]
            populators = get_related_populators(klass_info, select, connection.alias)
        compiled = _Compiled(sql, slots, compiler, converters, init_list, model_range, populators)
        self._compiled[key] = compiled
        return compiled

    def bind(self, **values: Any) -> tuple[str, list]:
        """The SQL and its parameters for these values (to run as is, or inside a larger query)."""
        return self._bind(default_connection(), values)

    def _bind(self, connection, values: dict[str, Any]) -> tuple[str, list]:
        compiled = self._compile(connection)
        prepared = {name: self._params[name][1].get_db_prep_value(value, connection) for name, value in values.items()}
        return compiled.sql, [value if name is None else prepared[name] for name, value in compiled.slots]

    def convert(self, rows: list, connection=None) -> list[list]:
        """Rows as the ORM would return them (columns after the query's own are left as they are)."""
        compiled = self._compile(connection)
        if not compiled.converters:
            return [list(row) for row in rows]
        return list(compiled.compiler.apply_converters((list(row) for row in rows), compiled.converters))

    def first(self, **values: Any) -> Model | None:
        """The first row as a model instance (with its select_related objects), or None."""
        connection = default_connection()
        sql, params = self._bind(connection, values)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        compiled = self._compiled[(connection.alias, connection.vendor)]
        row = self.convert([row], connection)[0]
        start, end = compiled.model_range
        model = compiled.compiler.klass_info["model"]
        instance = model.from_db(connection.alias, compiled.init_list, row[start:end])
        for populator in compiled.populators:
            populator.populate(row, instance)
        return instance


_insert_statements: dict[tuple, tuple[str, list[Field], Field | None]] = {}


def insert_statement(model: type[Model], names: tuple[str, ...] | None = None) -> tuple[str, list[Field], Field | None]:
    """(`INSERT INTO table (columns) VALUES (%s, ...)`, the fields in column order, the auto field
    or None) for `model` on the current database, built once: every concrete field but the auto
    one, or only the fields `names` (the others take their database default, e.g. NULL). With an
    auto field the statement ends in `RETURNING` its column, so it returns the new row's id."""
    connection = default_connection()
    key = (model, names, connection.alias, connection.vendor)
    statement = _insert_statements.get(key)
    if statement is None:
        meta = model._meta
        auto = meta.auto_field
        if names is None:
            fields = [f for f in meta.local_concrete_fields if f is not auto]
        else:
            fields = [meta.get_field(name) for name in names]
        quote = connection.ops.quote_name
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608 - model names
            f"VALUES ({', '.join(['%s'] * len(fields))})"
        )
        if auto is not None:
            sql += f" RETURNING {quote(auto.column)}"
        statement = _insert_statements[key] = (sql, fields, auto)
    return statement


def insert_params(instance: Model, fields: list[Field]) -> list:
    """The column values the ORM would save for `instance` (each field's pre_save, get_db_prep_save)."""
    connection = default_connection()
    return [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]


def mark_saved(instance: Model) -> Model:
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS
    return instance


def insert_one(instance: Model) -> Model:
    """`Model.objects.create()` for the hot path: the same column values (each field's `pre_save`
    and `get_db_prep_save`, as the ORM computes them) in one INSERT whose SQL is built once per
    model and database; an auto-increment id comes back with RETURNING. No model signals are
    sent (the hot path's models have no receivers)."""
    sql, fields, auto = insert_statement(type(instance))
    params = insert_params(instance, fields)
    with default_connection().cursor() as cursor:
        cursor.execute(sql, params)
        if auto is not None:
            setattr(instance, auto.attname, cursor.fetchone()[0])
    return mark_saved(instance)
