"""The Google Drive adapter, driven through a real MCP server process that replays recorded
resources of `@modelcontextprotocol/server-gdrive` (tests/fixtures/recorded/gdrive, shapes
documented in its README).

The graph is checked file by file against the recorded listing and contents (folders, documents
with their exported text, long documents chunked, binary files by name and size, links between
documents); a re-ingest after a change re-maps only what changed. That server lists no
modification times, so every file is read again on each run: the test pins that down too."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from aesoperator.ingest.client import open_connection
from aesoperator.ingest.mappers.gdrive import FOLDER_MIME, DriveIds, file_id, linked_ids
from aesoperator.ingest.mcp_ingest import ingest_source
from tests.test_adapter_github import (
    CYPHER,
    INJECTION,
    RECORDED,
    entities_of,
    logged,
    relations_of,
    replay_source,
)

ALLERGEN = "1pL5kJ8hG1fD4sA7zX0cV3bN6mQ9wE2rTyUiOpLkJhGf"
PLAN = "1qA8sD3fG6hJ9kL2zX5cV7bN0mQ4wE1rTyUiOpAsDfGh"
PROOFING = "1wE4rT7yU0iO3pA6sD9fG2hJ5kL8zX1cVbNmQwErTyUi"
HOLIDAY = "1yT5rE8wQ1mN4bV7cX0zL3kJ6hG9fD2sApOiUyTrEwQa"
TROUBLE = "1mN6bV9cX2zL5kJ8hG1fD4sA7pO0iU3yTrEwQmNbVcXz"
CALIBRATION = "1Kp4Lq7Mr0Ns3Ot6Pu9Qv2Rw5Sx8Ty1Uz"


def recorded(version: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    v1 = json.loads((RECORDED / "gdrive" / "v1.json").read_text())
    resources, contents = v1["resources"], dict(v1["contents"])
    if version == "v2":
        v2 = json.loads((RECORDED / "gdrive" / "v2.json").read_text())
        resources = v2["resources"]
        contents.update(v2["contents"])
    return resources, contents


def check_graph(engine: Any, version: str) -> None:
    ids = DriveIds("drive")
    entities = entities_of(engine, "drive")
    rels = relations_of(engine, "drive")
    resources, contents = recorded(version)
    for res in resources:
        fid = file_id(res["uri"])
        entity = entities[ids.item(fid, res["mimeType"])]
        assert entity.name == res["name"] and entity.properties["mimeType"] == res["mimeType"]
        assert entity.namespace == "shared-drive" and entity.properties["resource"] == res["uri"]
        if res["mimeType"] == FOLDER_MIME:
            assert entity.type == "Folder"
            continue
        content = contents[res["uri"]]
        if "blob" in content:
            assert entity.type == "File" and entity.properties["size"] == len(base64.b64decode(content["blob"]))
            continue
        assert entity.type == "Document" and entity.properties["content_mime"] == content["mimeType"]
        chunks = [e for e in entities.values() if e.type == "Chunk" and e.properties["drive_id"] == fid]
        whole = "\n".join([entity.text, *(c.text for c in chunks)])
        for paragraph in content["text"].split("\n\n"):  # verbatim, in the document or its chunks
            assert paragraph.strip() in whole
        for target in linked_ids(content["text"]):
            kinds = {file_id(r["uri"]): r["mimeType"] for r in resources}
            if target in kinds:
                assert ("LINKS_TO", entity.id, ids.item(target, kinds[target])) in rels
    listed = {ids.item(file_id(r["uri"]), r["mimeType"]) for r in resources}
    assert {e.id for e in entities.values() if e.type in ("Folder", "Document", "File")} == listed


def reads(calls: list[dict[str, Any]]) -> list[str]:
    return [file_id(c["uri"]) for c in calls if c["method"] == "resources/read"]


def test_gdrive_is_ingested_file_by_file_and_incrementally(tmp_path: Path, make_engine: Callable[..., Any]) -> None:
    log = tmp_path / "calls.jsonl"
    engine = make_engine(extractor="none")  # the adapter's own mapping, without extracted entities
    ids = DriveIds("drive")
    report = ingest_source(engine, replay_source("gdrive", "gdrive", log, name="drive", namespace="shared-drive"))
    assert not report.skipped
    calls = logged(log)
    assert [c["cursor"] for c in calls if c["method"] == "resources/list"] == [None, "10"]  # two pages
    resources, _ = recorded("v1")
    files = [file_id(r["uri"]) for r in resources if r["mimeType"] != FOLDER_MIME]
    assert sorted(reads(calls)) == sorted(files)  # folders are never read
    check_graph(engine, "v1")
    entities = entities_of(engine, "drive")
    chunks = [e for e in entities.values() if e.type == "Chunk"]
    assert chunks and {c.properties["drive_id"] for c in chunks} == {ALLERGEN}
    assert ("LINKS_TO", ids.item(TROUBLE, "application/vnd.google-apps.document"), ids.item(ALLERGEN, "x")) in (
        relations_of(engine, "drive")
    )

    hits = engine.search("can we call the almond macarons gluten-free?", k=5).hits
    assert {ids.item(ALLERGEN, "x"), *(c.id for c in chunks)} & {h.id for h in hits[:3]}
    hits = engine.search("bulk fermentation hours and temperature for rye sourdough", k=5).hits
    assert ids.item(PROOFING, "x") in {h.id for h in hits[:3]}

    # -- v2: two documents changed, one file deleted, one added
    seq = engine.store.last_seq()
    v2 = replay_source("gdrive", "gdrive", log, "v2", name="drive", namespace="shared-drive")
    report = ingest_source(engine, v2)
    assert not report.skipped
    check_graph(engine, "v2")
    assert report.records_removed >= 1 and engine.get_entities([ids.item(CALIBRATION, "text/plain")]) == []
    changed = {c.id for c in engine.store.changes_since(seq) if c.kind == "entity" and c.op == "upsert"}
    assert changed == {ids.item(f, "x") for f in (PLAN, PROOFING, HOLIDAY)}
    assert ("LINKS_TO", ids.item(HOLIDAY, "x"), ids.item(PLAN, "x")) in relations_of(engine, "drive")
    # the server lists no modification time: every file is read again, but only changes are mapped
    v2_files = [file_id(r["uri"]) for r in recorded("v2")[0] if r["mimeType"] != FOLDER_MIME]
    assert sorted(reads(logged(log))) == sorted(v2_files)

    seq = engine.store.last_seq()
    report = ingest_source(engine, v2)
    assert report.records_changed == 0 and engine.store.last_seq() == seq


def test_gdrive_text_that_reads_like_an_instruction_is_only_data(
    tmp_path: Path, make_engine: Callable[..., Any]
) -> None:
    log = tmp_path / "calls.jsonl"
    engine = make_engine()
    ingest_source(engine, replay_source("gdrive", "gdrive", log, name="drive"))
    before = engine.stats()
    texts = "\n".join(e.text for e in entities_of(engine, "drive").values())
    assert f"> {INJECTION}" in texts and CYPHER in texts
    assert engine.stats() == before
    assert len(engine.store.source_items("drive")) >= 12


def test_the_replayed_search_tool_answers_like_the_real_one(tmp_path: Path) -> None:
    async def run() -> str:
        async with open_connection(replay_source("gdrive", "gdrive", tmp_path / "log", name="drive")) as conn:
            assert [t.name for t in await conn.list_tools()] == ["search"]
            return (await conn.call_tool("search", {"query": "proofing"})).text

    assert anyio.run(run).startswith("Found 2 files:\nProofing schedule (application/vnd.google-apps.spreadsheet)")
