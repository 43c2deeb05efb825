"""The walk over a relational source: which records it yields, in which order, and when.

Records, in the order the walk yields them (relation endpoints are always written first):
``database``, one ``table:<table>`` per table, ``foreign-keys``, one ``row:<table>:<pk>`` per row,
then one ``links:<table>:<pk>`` per row whose foreign keys reach stored rows. A row's content hash
is a hash of its values, so a re-run re-maps only changed rows; rows that are gone are removed.
A ``links`` record that disappears is sent once more as an empty ``tombstone`` so that the
relations it held are expired.

The walk is dialect independent; the SQL lives in the adapters, behind the `RelationalReader`
protocol. Only allowed tables are ever named to the reader. `RelationalMapper` (relational.py)
turns the records into graph items.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import SourceError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.ingest.adapters.base import unchanged
from aesoperator.ingest.mappers.relational_catalog import (
    DatabaseInfo,
    ForeignKeyInfo,
    RelationalOptions,
    RelationalReader,
    TableInfo,
    pk_key,
    row_pk,
    table_key,
)
from aesoperator.ingest.records import SkippedRecord, SourceRecord

log = logging.getLogger(__name__)

MAPPING_VERSION = 1
DATABASE_KEY = "database"
FOREIGN_KEYS_KEY = "foreign-keys"
TABLE_PREFIX = "table:"
ROW_PREFIX = "row:"
LINKS_PREFIX = "links:"


def _digest(data: Any) -> str:
    return content_hash(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str))


# -- the walk --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Resolvable:
    """A foreign key whose values can be matched to the primary key of the referenced table's rows."""

    fk: ForeignKeyInfo
    ref: TableInfo
    source_columns: tuple[str, ...]  # the referencing columns, in the referenced table's key order


@dataclass(frozen=True, slots=True)
class _PendingLinks:
    key: str  # the links record key
    row: str  # the row's natural key
    targets: tuple[tuple[ForeignKeyInfo, str, str], ...]  # (fk, referenced table, target pk key)


def _resolvable(fks: Sequence[ForeignKeyInfo], tables: Mapping[str, TableInfo]) -> dict[str, list[_Resolvable]]:
    out: dict[str, list[_Resolvable]] = {}
    for fk in fks:
        ref = tables.get(fk.ref_table)
        if ref is None or not ref.primary_key or set(fk.ref_columns) != set(ref.primary_key):
            continue  # references a unique key other than the primary key: kept at table level only
        by_ref = dict(zip(fk.ref_columns, fk.columns, strict=True))
        out.setdefault(fk.table, []).append(_Resolvable(fk, ref, tuple(by_ref[c] for c in ref.primary_key)))
    return out


def _record(key: str, kind: str, payload: dict[str, Any], digest: str, uri: str) -> SourceRecord:
    return SourceRecord(key=key, kind=kind, content_hash=digest, payload=payload, uri=uri)


def _unchanged(previous: Mapping[str, SourceItemState], key: str, digest: str) -> SourceItemState | None:
    state = previous.get(key)
    return state if state is not None and state.content_hash == digest else None


class _TableWalk:
    """One pass over a relational source (see `relational_records`)."""

    def __init__(
        self,
        reader: RelationalReader,
        options: RelationalOptions,
        namespace: str,
        previous: Mapping[str, SourceItemState],
        skipped: list[SkippedRecord],
    ) -> None:
        self.reader = reader
        self.options = options
        self.previous = previous
        self.skipped = skipped
        self.settings = {"v": MAPPING_VERSION, "namespace": namespace, "max_value_chars": options.max_value_chars}
        self.yielded: set[str] = set()
        self.seen_keys: dict[str, set[str]] = {}  # referenced table -> pk keys of its stored rows
        self.pending: list[_PendingLinks] = []

    def _emit(self, key: str, kind: str, payload: dict[str, Any], digest: str, uri: str) -> SourceRecord:
        self.yielded.add(key)
        before = _unchanged(self.previous, key, digest)
        return unchanged(before, uri) if before is not None else _record(key, kind, payload, digest, uri)

    async def records(self) -> AsyncIterator[SourceRecord]:
        db = await self.reader.database()
        tables = await self.reader.tables(self.options.allowed_tables)
        missing = sorted(set(self.options.allowed_tables) - {t.name for t in tables})
        if missing:
            log.warning("allowed tables not found in database %s: %s", db.name, ", ".join(missing))
        by_name = {t.name: t for t in tables}
        fks = [f for f in (await self.reader.foreign_keys(tables) if tables else []) if f.ref_table in by_name]
        db_data = asdict(db)

        digest = _digest({**self.settings, "database": db_data, "tables": [(t.schema, t.name) for t in tables]})
        yield self._emit(DATABASE_KEY, "database", {"database": db, "tables": tables}, digest, db.uri)
        for table in tables:
            own = [f for f in fks if f.table == table.name]
            payload = {"database": db, "table": table, "foreign_keys": own}
            digest = _digest({**self.settings, "db": db_data, "table": asdict(table), "fks": [asdict(f) for f in own]})
            yield self._emit(TABLE_PREFIX + table_key(table.schema, table.name), "table", payload, digest, db.uri)
        schema = tables[0].schema if tables else db.default_schema
        digest = _digest({**self.settings, "schema": schema, "fks": [asdict(f) for f in fks]})
        payload = {"database": db, "schema": schema, "foreign_keys": fks}
        yield self._emit(FOREIGN_KEYS_KEY, "foreign_keys", payload, digest, db.uri)

        resolvable = _resolvable(fks, by_name)
        self.seen_keys = {r.ref.name: set() for group in resolvable.values() for r in group}
        for table in tables:
            async for record in self._rows(db, table, resolvable.get(table.name, [])):
                yield record
        for record in self._links(db, schema):
            yield record
        for key, state in self.previous.items():
            if key.startswith(LINKS_PREFIX) and key not in self.yielded and state.relation_ids:
                yield _record(key, "tombstone", {}, "tombstone", db.uri)

    async def _rows(
        self, db: DatabaseInfo, table: TableInfo, resolvable: Sequence[_Resolvable]
    ) -> AsyncIterator[SourceRecord]:
        tkey = table_key(table.schema, table.name)
        if not table.key_columns:
            reason = f"table {table.name} has no primary key, so its rows cannot be identified; they are not read"
            self.skipped.append(SkippedRecord(f"{ROW_PREFIX}{tkey}", reason))
            return
        table_digest = _digest({**self.settings, "db": db.name, "table": asdict(table)})
        seen = self.seen_keys.get(table.name)
        read = 0
        cursor: Any = None
        limit = self.options.row_limit
        try:
            while read < limit:
                asked = min(self.options.page_size, limit - read)
                page = await self.reader.rows(table, cursor, asked)
                keys: list[dict[str, Any] | None] = (
                    list(page.key_values) if page.key_values is not None else [None] * len(page.rows)
                )
                for values, key_values in zip(page.rows, keys, strict=True):
                    pk = row_pk(table, values, key_values)
                    pkk = pk_key(pk)
                    key = f"{ROW_PREFIX}{tkey}:{pkk}"
                    if key in self.yielded:
                        continue
                    digest = _digest({"t": table_digest, "values": values, "key": key_values})
                    payload = {"database": db, "table": table, "values": values, "key_values": key_values}
                    yield self._emit(key, "row", payload, digest, f"{db.uri}#{tkey}:{pkk}")
                    if seen is not None:
                        seen.add(pkk)
                    targets = []
                    for r in resolvable:
                        target = [values.get(c) for c in r.source_columns]
                        if all(v is not None for v in target):
                            targets.append((r.fk, r.ref.name, pk_key(target)))
                    if targets:
                        self.pending.append(
                            _PendingLinks(f"{LINKS_PREFIX}{tkey}:{pkk}", f"{tkey}:{pkk}", tuple(targets))
                        )
                read += len(page.rows)
                if len(page.rows) < asked or page.cursor is None:
                    break
                cursor = page.cursor
            if read >= limit:
                log.info("table %s: stopped at the row limit of %d rows", table.name, limit)
        except SourceError as exc:
            # Unreadable now is not the same as gone: what was stored for this table's rows stays.
            self.skipped.append(SkippedRecord(f"{ROW_PREFIX}{tkey}", f"rows of table {table.name} not read: {exc}"))
            for prefix in (f"{ROW_PREFIX}{tkey}:", f"{LINKS_PREFIX}{tkey}:"):
                for key, state in self.previous.items():
                    if key.startswith(prefix) and key not in self.yielded:
                        self.yielded.add(key)
                        if seen is not None and prefix.startswith(ROW_PREFIX):
                            seen.add(key[len(prefix) :])
                        yield unchanged(state, db.uri)
            self.pending = [p for p in self.pending if not p.key.startswith(f"{LINKS_PREFIX}{tkey}:")]

    def _links(self, db: DatabaseInfo, schema: str) -> list[SourceRecord]:
        out = []
        for pending in self.pending:
            if pending.key in self.yielded:
                continue
            links = [
                [fk.name, list(fk.columns), list(fk.ref_columns), f"{table_key(schema, ref)}:{target}"]
                for fk, ref, target in pending.targets
                if target in self.seen_keys.get(ref, ())
            ]
            if not links:
                continue
            digest = _digest({**self.settings, "row": pending.row, "links": links})
            out.append(self._emit(pending.key, "links", {"row": pending.row, "links": links}, digest, db.uri))
        return out


async def relational_records(
    reader: RelationalReader,
    options: RelationalOptions,
    namespace: str,
    previous: Mapping[str, SourceItemState],
    skipped: list[SkippedRecord],
) -> AsyncIterator[SourceRecord]:
    """Every record of a relational source, in an order that writes relation endpoints first.

    Rows are read a page at a time in key order; what stays in memory between pages is the key
    of each row (to resolve foreign keys once every table is read), never the rows themselves.
    A table whose rows cannot be read is reported in `skipped` and what was stored for it stays."""
    async for record in _TableWalk(reader, options, namespace, previous, skipped).records():
        yield record
