"""Bad data is quarantined with its reason; a bug in a mapper stops the ingest and says where."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.errors import MappingError, SchemaError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.graph_schema.models import Entity
from aesoperator.ingest.mappers.github import GitHubMapper
from aesoperator.ingest.mappers.memory_server import MemoryServerMapper
from aesoperator.ingest.pipeline import IngestPipeline, quarantine_key, quarantined
from aesoperator.ingest.records import MappedItem, SourceRecord, required


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedGraphStore]:
    s = EmbeddedGraphStore(tmp_path / "data")
    yield s
    s.close()


def record(key: str, kind: str, payload: dict[str, object]) -> SourceRecord:
    return SourceRecord(key, kind, content_hash(repr(payload)), payload, f"test:{key}")


def issue(number: object) -> dict[str, object]:
    return {
        "repository": "acme/ovenctl",
        "issue": {"number": number, "title": "Oven too hot", "body": "", "state": "open"},
    }


def test_mapping_error_is_a_schema_error_and_names_the_field() -> None:
    assert issubclass(MappingError, SchemaError)
    with pytest.raises(MappingError, match="the issue has no 'number' field"):
        GitHubMapper("gh", "default").map(record("issue:1", "issue", {"repository": "acme/ovenctl", "issue": {}}))
    with pytest.raises(MappingError, match="'observations' is str, not list"):
        MemoryServerMapper("mem", "default").map(
            record("e", "entity", {"name": "Ada", "entityType": "person", "observations": "x", "order": 0})
        )
    with pytest.raises(MappingError, match="the record is list"):
        required([], "id")


def test_a_bad_record_is_quarantined_with_its_reason_and_the_rest_goes_in(store: EmbeddedGraphStore) -> None:
    records = [
        record("repo", "repository", {"repository": {"full_name": "acme/ovenctl"}}),
        record("issue:1", "issue", issue(1)),
        record("issue:2", "issue", issue("two")),
        record("issue:3", "issue", issue(3)),
    ]
    report = IngestPipeline(store, None).run("gh", records, GitHubMapper("gh", "default"))
    assert report.quarantined == 1
    assert [s.key for s in report.skipped] == ["issue:2"]
    assert "'number' is 'two', not an integer" in report.skipped[0].reason
    ((key, reason, _when),) = quarantined(store.source_items("gh"))
    assert key == "issue:2" and "not an integer" in reason
    assert {"issue:1", "issue:3"} <= set(store.source_items("gh"))


class BuggyMapper:
    """Reads a field under the wrong name: a bug, not bad data."""

    kind = "buggy"

    def map(self, record: SourceRecord) -> MappedItem:
        name = record.payload["titel"]
        return MappedItem(entities=[Entity(id=f"t:{name}", type="Note", name=name, text=name, source="t")])


def test_a_mapper_bug_stops_the_ingest_naming_mapper_source_and_key(store: EmbeddedGraphStore) -> None:
    records = [record("note:1", "note", {"title": "one"})]
    with pytest.raises(RuntimeError, match=r"mapper BuggyMapper failed on record 'note:1' of source 'notes'") as info:
        IngestPipeline(store, None).run("notes", records, BuggyMapper())
    assert "KeyError: 'titel'" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)
    items = store.source_items("notes")
    assert quarantine_key("note:1") not in items and not quarantined(items)
