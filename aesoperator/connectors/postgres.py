"""PostgreSQL as an MCP server with its rules enforced at the source.

Rules:

- only the tables in `allowed_tables` (of one `schema`) are ever named in a statement, described,
  read or listed; asking for another table is refused before anything reaches the database;
- no SQL from the caller: tools take a table name, columns, filters, an order and a limit; every
  identifier is checked against the catalog and composed with `psycopg.sql.Identifier` (its `%`
  doubled, see `pg_sql`, so no name can act as a placeholder), every value travels as a query
  parameter;
- read-only by default: the session is opened with `default_transaction_read_only = on` and every
  transaction is started READ ONLY (connect with a role that can only read, too);
- at most `row_limit` rows per call, and a statement timeout.

Tools: `describe_tables`, `query` (rows with filters/columns/order/limit), `aggregate` (count,
sum, avg, min, max, count_distinct grouped by columns or truncated dates), `read_rows` (all
columns in primary key order after a key: what the engine's ingest pages with) and, only when the
connector is not read-only, `insert_rows`.

Resources: `postgres://tables` (every allowed table's schema) and `postgres://tables/{table}`
(one table's schema). Subscribing to either is told when the table changes (row count and the
newest row version, read while someone listens; it scans the table, so keep `poll_seconds`
generous on large tables).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aesoperator.connectors.pg_sql import Ident, catalog_sql
from aesoperator.connectors.postgres_models import ColumnSchema, Filter, GroupBy, Metric, OrderBy, TableSchema
from aesoperator.errors import ConfigError, PermissionDenied, SchemaError, SourceError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ROW_LIMIT = 1000
MAX_FILTERS = 50
CATALOG_TTL_SECONDS = 30.0
TABLES_URI = "postgres://tables"
TABLE_URI_TEMPLATE = "postgres://tables/{table}"
TRUNC_UNITS = ("minute", "hour", "day", "week", "month", "quarter", "year")


def _number(text: str) -> float | str:
    """A JSON number with a fraction or exponent: a float when that keeps it exactly, else its text."""
    value = float(text)
    return value if math.isfinite(value) and repr(value) == text else text


def _parse_row(text: str) -> dict[str, Any]:
    value = json.loads(text, parse_float=_number)
    if not isinstance(value, dict):
        raise SourceError("a row did not arrive as a JSON object")
    return value


def safe_dsn(dsn: str) -> str:
    """The connection string without password or options, for provenance and messages."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "postgresql://(unparsable connection string)"
    host = str(params.get("host") or "")
    if ":" in host:
        host = f"[{host}]"
    port = params.get("port")
    db = params.get("dbname") or ""
    return f"postgresql://{host}{':' + str(port) if port else ''}/{db}"


@dataclass
class PostgresSource:
    """The rules and the SQL, synchronous (psycopg 3). Tools call it from worker threads."""

    dsn: str = field(repr=False)
    allowed_tables: Sequence[str]
    schema: str = "public"
    read_only: bool = True
    row_limit: int = DEFAULT_ROW_LIMIT
    statement_timeout_ms: int = 15_000
    connect_timeout: int = 10
    retries: int = 3
    _conn: Any = field(default=None, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _catalog: dict[str, TableSchema] | None = field(default=None, init=False, repr=False)
    _catalog_at: float = field(default=0.0, init=False, repr=False)
    _database: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        tables = [t for t in self.allowed_tables if isinstance(t, str) and t.strip()]
        if not tables:
            raise ConfigError("the postgres connector needs allowed_tables: name the tables it may read")
        self.allowed_tables = tuple(dict.fromkeys(tables))
        if not 1 <= self.row_limit <= 1_000_000:
            raise ConfigError(f"row_limit must be between 1 and 1000000, got {self.row_limit}")
        if not self.dsn:
            raise ConfigError("the postgres connector needs a connection string")

    # -- connection -----------------------------------------------------------------------------
    def _connect(self) -> Any:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        try:
            params = conninfo_to_dict(self.dsn)
        except Exception:
            raise ConfigError(
                "the connection string could not be parsed (use postgresql://user@host:port/db)"
            ) from None
        options = str(params.get("options") or "")
        options += f" -c statement_timeout={int(self.statement_timeout_ms)}"
        if self.read_only:
            options += " -c default_transaction_read_only=on"
        conninfo = make_conninfo(self.dsn, options=options.strip(), connect_timeout=str(self.connect_timeout))
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                conn = psycopg.connect(conninfo, autocommit=False, application_name="aesoperator-connector")
                conn.read_only = self.read_only
                return conn
            except psycopg.OperationalError as exc:
                if attempt >= self.retries:
                    # the server's message names host and database, never the password
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise SourceError(
                        f"cannot connect to {safe_dsn(self.dsn)} after {attempt + 1} attempts: {reason}"
                    ) from None
                log.info("postgres %s: connection failed, retrying in %.1fs", safe_dsn(self.dsn), delay)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def run(self, work: Callable[[Any], T], write: bool = False) -> T:
        """Run `work(cursor)` in one transaction (READ ONLY unless `write`); a broken connection
        is reopened and the work retried once."""
        import psycopg

        if write and self.read_only:
            raise PermissionDenied("this postgres connector is read-only")
        with self._lock:
            for attempt in (0, 1):
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                conn = self._conn
                try:
                    with conn.cursor() as cur:
                        result = work(cur)
                    if write:
                        conn.commit()
                    else:
                        conn.rollback()
                    return result
                except psycopg.OperationalError as exc:
                    with _quiet():
                        conn.close()
                    self._conn = None
                    if attempt == 1 or conn.broken is False:
                        raise SourceError(f"postgres {safe_dsn(self.dsn)}: {_first_line(exc)}") from None
                except psycopg.Error as exc:
                    with _quiet():
                        conn.rollback()
                    raise SourceError(f"postgres {safe_dsn(self.dsn)}: {_first_line(exc)}") from None
                except BaseException:
                    with _quiet():
                        conn.rollback()
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with _quiet():
                    self._conn.close()
                self._conn = None

    # -- catalog --------------------------------------------------------------------------------
    def catalog(self, refresh: bool = False) -> dict[str, TableSchema]:
        """The allowed tables that exist, by name (cached briefly)."""
        now = time.monotonic()
        if not refresh and self._catalog is not None and now - self._catalog_at < CATALOG_TTL_SECONDS:
            return self._catalog
        allowed = list(self.allowed_tables)

        def read(cur: Any) -> dict[str, TableSchema]:
            cur.execute(
                "SELECT c.relname::text, c.relkind::text, pg_catalog.obj_description(c.oid, 'pg_class'), "
                "c.reltuples::bigint "
                "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relname::text = ANY(%s) "
                "ORDER BY 1",
                (self.schema, allowed),
            )
            tables = cur.fetchall()
            cur.execute(
                "SELECT c.relname::text, a.attnum, a.attname::text, "
                "pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                "pg_catalog.pg_get_expr(d.adbin, d.adrelid), pg_catalog.col_description(c.oid, a.attnum) "
                "FROM pg_catalog.pg_attribute a "
                "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attnum > 0 AND NOT a.attisdropped AND n.nspname = %s AND c.relname::text = ANY(%s) "
                "ORDER BY 1, 2",
                (self.schema, allowed),
            )
            columns = cur.fetchall()
            cur.execute(
                "SELECT c.relname::text, con.conname::text, con.contype::text, k.ord, a.attname::text, "
                "fc.relname::text, fa.attname::text "
                "FROM pg_catalog.pg_constraint con "
                "JOIN pg_catalog.pg_class c ON c.oid = con.conrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) "
                "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
                "LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid "
                "LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace "
                "LEFT JOIN pg_catalog.pg_attribute fa ON fa.attrelid = con.confrelid "
                "AND fa.attnum = con.confkey[k.ord] "
                "WHERE con.contype IN ('p', 'f') AND n.nspname = %s AND c.relname::text = ANY(%s) "
                "AND (con.contype = 'p' OR (fn.nspname = %s AND fc.relname::text = ANY(%s))) "
                "ORDER BY 1, 2, 4",
                (self.schema, allowed, self.schema, allowed),
            )
            constraints = cur.fetchall()
            cols: dict[str, list[ColumnSchema]] = {}
            for table, position, name, data_type, not_null, default, comment in columns:
                cols.setdefault(table, []).append(
                    ColumnSchema(name, data_type, not not_null, default, int(position), comment)
                )
            pks: dict[str, list[str]] = {}
            fks: dict[tuple[str, str], dict[str, Any]] = {}
            for table, con_name, kind, _ord, column, ref_table, ref_column in constraints:
                if kind == "p":
                    pks.setdefault(table, []).append(column)
                else:
                    fk = fks.setdefault(
                        (table, con_name), {"name": con_name, "columns": [], "ref_table": ref_table, "ref_columns": []}
                    )
                    fk["columns"].append(column)
                    fk["ref_columns"].append(ref_column)
            out: dict[str, TableSchema] = {}
            for name, kind, comment, estimate in tables:
                out[name] = TableSchema(
                    schema=self.schema,
                    name=name,
                    kind={"r": "table", "p": "table", "v": "view", "m": "materialized view"}.get(kind, kind),
                    columns=tuple(cols.get(name, ())),
                    primary_key=tuple(pks.get(name, ())),
                    foreign_keys=tuple(fk for (t, _), fk in sorted(fks.items()) if t == name),
                    comment=comment,
                    row_estimate=int(estimate) if estimate is not None and estimate >= 0 else None,
                )
            return out

        self._catalog = self.run(read)
        self._catalog_at = now
        return self._catalog

    def table(self, name: str) -> TableSchema:
        """An allowed table's schema. Any other name is refused without asking the database."""
        if name not in self.allowed_tables:
            raise PermissionDenied(
                f"table {name!r} is not among the allowed tables {list(self.allowed_tables)} of this connector"
            )
        catalog = self.catalog()
        if name not in catalog:
            catalog = self.catalog(refresh=True)
        if name not in catalog:
            raise SchemaError(f"allowed table {name!r} does not exist in schema {self.schema!r}")
        return catalog[name]

    def database(self) -> dict[str, Any]:
        if self._database is None:

            def read(cur: Any) -> dict[str, Any]:
                cur.execute("SELECT current_database(), current_setting('server_version')")
                name, version = cur.fetchone()
                return {"name": name, "version": version, "dialect": "PostgreSQL", "uri": safe_dsn(self.dsn)}

            self._database = self.run(read)
        return self._database

    def describe(self) -> dict[str, Any]:
        catalog = self.catalog(refresh=True)
        return {
            "database": self.database(),
            "schema": self.schema,
            "tables": [catalog[t].as_dict() for t in self.allowed_tables if t in catalog],
            "missing": [t for t in self.allowed_tables if t not in catalog],
            "read_only": self.read_only,
            "row_limit": self.row_limit,
        }

    # -- composing statements -------------------------------------------------------------------
    def _relation(self, table: TableSchema) -> Any:
        from psycopg import sql

        return sql.SQL("{}.{}").format(Ident(table.schema), Ident(table.name))

    def _where(self, table: TableSchema, filters: Sequence[Filter] | Mapping[str, Any] | None) -> tuple[Any, list[Any]]:
        from psycopg import sql

        items = _filters(filters)
        if len(items) > MAX_FILTERS:
            raise SchemaError(f"at most {MAX_FILTERS} filters, got {len(items)}")
        parts: list[Any] = []
        params: list[Any] = []
        for f in items:
            col = Ident(table.column(f.column).name)
            op = f.op
            if op in ("is null", "is not null"):
                parts.append(sql.SQL("{} IS NULL" if op == "is null" else "{} IS NOT NULL").format(col))
            elif op in ("in", "not in"):
                if not isinstance(f.value, list) or not f.value:
                    raise SchemaError(f"filter {f.column} {op}: the value must be a non-empty list")
                parts.append(sql.SQL("{} = ANY(%s)" if op == "in" else "NOT ({} = ANY(%s))").format(col))
                params.append(list(f.value))
            elif op == "between":
                if not isinstance(f.value, list) or len(f.value) != 2:
                    raise SchemaError(f"filter {f.column} between: the value must be [low, high]")
                parts.append(sql.SQL("{} BETWEEN %s AND %s").format(col))
                params.extend(f.value)
            else:
                if f.value is None:
                    raise SchemaError(f"filter {f.column} {op}: a value is needed (use 'is null' for NULL)")
                if isinstance(f.value, dict | list):
                    raise SchemaError(f"filter {f.column} {op}: the value must be a single value")
                keyword = {"like": "LIKE", "ilike": "ILIKE", "!=": "<>"}.get(op, op)
                parts.append(sql.SQL("{} " + keyword + " %s").format(col))
                params.append(f.value)
        if not parts:
            return sql.SQL(""), params
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params

    def _limit(self, limit: int | None) -> int:
        if limit is None:
            return self.row_limit
        if limit < 1:
            raise SchemaError(f"limit must be at least 1, got {limit}")
        return min(limit, self.row_limit)

    def _rows(self, cur: Any, statement: Any, params: Sequence[Any]) -> list[dict[str, Any]]:
        cur.execute(statement, params)
        return [_parse_row(r[0]) for r in cur.fetchall()]

    # -- reads ------------------------------------------------------------------------------------
    def query(
        self,
        table: str,
        columns: Sequence[str] | None = None,
        filters: Sequence[Filter] | Mapping[str, Any] | None = None,
        order_by: Sequence[OrderBy] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> dict[str, Any]:
        from psycopg import sql

        schema = self.table(table)
        chosen = [schema.column(c).name for c in columns] if columns else [c.name for c in schema.columns]
        where, params = self._where(schema, filters)
        order = [schema.column(o.column).name for o in order_by or ()]
        directions = [o.direction for o in order_by or ()]
        if not order and schema.primary_key:
            order, directions = list(schema.primary_key), ["asc"] * len(schema.primary_key)
        n = self._limit(limit)
        if offset < 0:
            raise SchemaError("offset must not be negative")
        inner = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(Ident(c) for c in chosen), self._relation(schema)
        )
        inner += where
        if order:
            inner += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(
                sql.SQL("{} " + ("DESC" if d == "desc" else "ASC")).format(Ident(c))
                for c, d in zip(order, directions, strict=True)
            )
        inner += sql.SQL(" LIMIT %s OFFSET %s")
        statement = sql.SQL("SELECT row_to_json(r)::text FROM ({}) AS r").format(inner)
        rows = self.run(lambda cur: self._rows(cur, statement, [*params, n + 1, offset]))
        truncated = len(rows) > n
        return {
            "table": schema.name,
            "columns": chosen,
            "rows": rows[:n],
            "row_count": min(len(rows), n),
            "truncated": truncated,
            "limit": n,
        }

    def aggregate(
        self,
        table: str,
        metrics: Sequence[Metric],
        group_by: Sequence[GroupBy] = (),
        filters: Sequence[Filter] | Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        from psycopg import sql

        schema = self.table(table)
        if not metrics:
            raise SchemaError("give at least one metric, e.g. {fn: count}")
        select: list[Any] = []
        keys: list[Any] = []
        names: list[str] = []
        for g in group_by:
            col = Ident(schema.column(g.column).name)
            alias = g.alias or (f"{g.column}_{g.trunc}" if g.trunc else g.column)
            expr: Any = sql.SQL("date_trunc({}, {})").format(sql.Literal(g.trunc), col) if g.trunc else col
            select.append(sql.SQL("{} AS {}").format(expr, Ident(alias)))
            keys.append(expr)
            names.append(alias)
        for m in metrics:
            if m.column is None and m.fn != "count":
                raise SchemaError(f"metric {m.fn} needs a column")
            metric_col = Ident(schema.column(m.column).name) if m.column is not None else None
            alias = m.alias or (f"{m.fn}_{m.column}" if m.column else m.fn)
            metric: Any
            if m.fn == "count":
                metric = sql.SQL("count({})").format(metric_col) if metric_col is not None else sql.SQL("count(*)")
            elif m.fn == "count_distinct":
                metric = sql.SQL("count(DISTINCT {})").format(metric_col)
            else:
                metric = sql.SQL(m.fn + "({})").format(metric_col)
            select.append(sql.SQL("{} AS {}").format(metric, Ident(alias)))
            names.append(alias)
        if len(set(names)) != len(names):
            raise SchemaError(f"result names must be unique: {names}; give aliases")
        where, params = self._where(schema, filters)
        n = self._limit(limit)
        inner = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(select), self._relation(schema)) + where
        if keys:
            positions = sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(keys)))
            inner += sql.SQL(" GROUP BY {} ORDER BY {}").format(positions, positions)
        inner += sql.SQL(" LIMIT %s")
        statement = sql.SQL("SELECT row_to_json(r)::text FROM ({}) AS r").format(inner)
        rows = self.run(lambda cur: self._rows(cur, statement, [*params, n + 1]))
        return {
            "table": schema.name,
            "columns": names,
            "rows": rows[:n],
            "row_count": min(len(rows), n),
            "truncated": len(rows) > n,
            "limit": n,
        }

    def read_rows(self, table: str, after: Mapping[str, Any] | None = None, limit: int | None = None) -> dict[str, Any]:
        """All columns in primary key order, after the key `after` (keyset paging)."""
        from psycopg import sql

        schema = self.table(table)
        if not schema.primary_key:
            raise SchemaError(f"table {table!r} has no primary key, so its rows cannot be paged")
        key = [Ident(c) for c in schema.primary_key]
        n = self._limit(limit)
        inner = sql.SQL("SELECT * FROM {}").format(self._relation(schema))
        params: list[Any] = []
        if after:
            missing = [c for c in schema.primary_key if c not in after]
            if missing:
                raise SchemaError(f"after must give the primary key columns {list(schema.primary_key)}")
            types = {c.name: c.data_type for c in schema.columns}
            casts = [sql.SQL("CAST(%s AS {})").format(catalog_sql(types[c])) for c in schema.primary_key]
            inner += sql.SQL(" WHERE ({}) > ({})").format(sql.SQL(", ").join(key), sql.SQL(", ").join(casts))
            params.extend(_key_param(after[c]) for c in schema.primary_key)
        inner += sql.SQL(" ORDER BY {} LIMIT %s").format(sql.SQL(", ").join(key))
        statement = sql.SQL("SELECT row_to_json(r)::text FROM ({}) AS r").format(inner)
        rows = self.run(lambda cur: self._rows(cur, statement, [*params, n]))
        cursor = {c: rows[-1].get(c) for c in schema.primary_key} if len(rows) == n else None
        return {"table": schema.name, "rows": rows, "row_count": len(rows), "next_after": cursor}

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        from psycopg import sql

        if self.read_only:
            raise PermissionDenied("this postgres connector is read-only")
        schema = self.table(table)
        if not rows:
            return {"table": schema.name, "inserted": 0}
        if len(rows) > self.row_limit:
            raise SchemaError(f"at most {self.row_limit} rows per call")
        columns = sorted({c for r in rows for c in r})
        for c in columns:
            schema.column(c)
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self._relation(schema),
            sql.SQL(", ").join(Ident(c) for c in columns),
            sql.SQL(", ").join(sql.Placeholder() for _ in columns),
        )

        def write(cur: Any) -> int:
            cur.executemany(statement, [[r.get(c) for c in columns] for r in rows])
            return len(rows)

        inserted = self.run(write, write=True)
        self._catalog = None
        return {"table": schema.name, "inserted": inserted}

    def versions(self) -> dict[str, str]:
        """A version per table resource (row count and newest row version), and for the list."""
        from psycopg import sql

        catalog = self.catalog()
        tables = [catalog[t] for t in self.allowed_tables if t in catalog and catalog[t].kind != "view"]

        def read(cur: Any) -> dict[str, str]:
            out: dict[str, str] = {}
            for t in tables:
                cur.execute(
                    sql.SQL("SELECT count(*), coalesce(max(xmin::text::bigint), 0) FROM {}").format(self._relation(t)),
                    (),  # parsed for placeholders, so the `%%` of an identifier reads as `%`
                )
                count, newest = cur.fetchone()
                out[f"{TABLES_URI}/{t.name}"] = f"{count}:{newest}"
            return out

        versions = self.run(read)
        versions[TABLES_URI] = "|".join(f"{k}={v}" for k, v in sorted(versions.items()))
        return versions


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _key_param(value: Any) -> Any:
    return value if isinstance(value, int | float | str) or value is None else json.dumps(value)


def _filters(filters: Sequence[Filter] | Mapping[str, Any] | None) -> list[Filter]:
    if not filters:
        return []
    if isinstance(filters, Mapping):
        out = []
        for column, value in filters.items():
            if isinstance(value, list):
                out.append(Filter(column=column, op="in", value=value))
            elif value is None:
                out.append(Filter(column=column, op="is null"))
            else:
                out.append(Filter(column=column, op="=", value=value))
        return out
    return [f if isinstance(f, Filter) else Filter.model_validate(f) for f in filters]


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True
