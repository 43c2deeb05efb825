"""Knowledge extraction: the rules, the real spaCy model, the pipeline stage (incremental,
idempotent, whole batches after a failure), episodes, code symbols and bad input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aesoperator.graph_schema.knowledge import CODE, PROSE, TextItem
from aesoperator.ingest.extract.default import DefaultExtractor
from aesoperator.ingest.extract.rules import rule_mentions
from aesoperator.ingest.extract.sentences import sentence_spans

FIXTURE_CODE = Path(__file__).parent / "fixtures" / "code"


def _by_text(mentions: list[Any]) -> dict[str, Any]:
    return {m.text: m for m in mentions}


def test_rules_find_contacts_refs_dates_acronyms_and_identifiers() -> None:
    text = (
        "Patients had magnetic resonance imaging (MRI) on 3 May 2015; the MRI was normal. "
        "Write to kim@acme.example or @grace-h about acme/ovenctl#12 and #7, see https://acme.example/x. "
        "Call `name_lookup` on ContextEngine. DNA was sequenced on 2020-01-02."
    )
    mentions, definitions = rule_mentions(text, PROSE)
    found = _by_text(mentions)
    assert found["kim@acme.example"].key == "email:kim@acme.example" and found["kim@acme.example"].type == "Person"
    assert found["@grace-h"].key == "login:grace-h"
    assert found["acme/ovenctl#12"].key == "issue:acme/ovenctl#12" and found["#7"].key == "issue:#7"
    assert found["https://acme.example/x"].type == "Url"
    assert found["3 May 2015"].key == "date:2015-05-03" and found["2020-01-02"].key == "date:2020-01-02"
    assert found["name_lookup"].type == "Identifier" and found["ContextEngine"].type == "Identifier"
    assert found["DNA"].type == "Concept"  # an acronym used without a definition
    [definition] = definitions
    assert (definition.short.text, definition.long.text) == ("MRI", "magnetic resonance imaging")
    # the later use of the defined acronym carries its expansion as an alias
    uses = [m for m in mentions if m.text == "MRI"]
    assert len(uses) == 2 and all(m.aliases == ("magnetic resonance imaging",) for m in uses)
    for m in mentions:
        assert text[m.start : m.end] == m.text


def test_code_gets_only_contacts_and_dates() -> None:
    code = "# Author: kim@acme.example, see #12\nclass OrderService(Base):\n    MAX_ITEMS = 3  # NOTE (NB)\n"
    mentions, definitions = rule_mentions(code, CODE)
    assert {m.type for m in mentions} == {"Person", "IssueRef"} and not definitions


def test_decorators_are_not_handles() -> None:
    """A line that is only `@name` or `@name(...)` is a decorator in code; a handle in prose is
    followed by words, or stands inside a line."""
    code = "class Box:\n    @property\n    def size(self) -> int: ...\n@dataclass(frozen=True)\nclass A: ...\n"
    mentions, _ = rule_mentions(code, CODE)
    assert not [m for m in mentions if m.text.startswith("@")]
    prose = "@alice please review this.\nThanks, ping @bob-k when done.\n"
    found = {m.text for m in rule_mentions(prose, PROSE)[0]}
    assert {"@alice", "@bob-k"} <= found


def test_sentences_respect_abbreviations() -> None:
    text = "Dr. Smith met Mr. Jones. They talked, e.g. about NATO! Then left.\n\nNew paragraph"
    spans = [text[a:b] for a, b in sentence_spans(text)]
    assert spans == ["Dr. Smith met Mr. Jones.", "They talked, e.g. about NATO!", "Then left.", "New paragraph"]


def test_default_extractor_uses_the_real_model() -> None:
    extractor = DefaultExtractor()
    assert extractor.signature.startswith("default:rules-")
    text = "Angela Merkel met Barack Obama in Berlin. Microsoft opened an office in Paris in 2019."
    [result] = extractor.extract([TextItem("t", text)])
    types = {m.text: m.type for m in result.mentions}
    assert types["Angela Merkel"] == "Person" and types["Barack Obama"] == "Person"
    assert types["Berlin"] == "Place" and types["Paris"] == "Place"
    assert types["Microsoft"] == "Organization"
    pairs = {
        frozenset((result.mentions[r.src].text, result.mentions[r.dst].text))
        for r in result.relations
        if r.type == "CO_OCCURS_WITH"
    }
    assert frozenset(("Angela Merkel", "Barack Obama")) in pairs
    assert frozenset(("Angela Merkel", "Paris")) not in pairs  # another sentence
    for r in result.relations:
        assert r.start <= result.mentions[r.src].start and result.mentions[r.dst].end <= r.end


def test_bad_text_gets_an_error_or_a_note_not_a_crash() -> None:
    extractor = DefaultExtractor()
    binary, cyrillic, empty = extractor.extract(
        [
            TextItem("bin", "\x00\x01\x02PNG data"),
            TextItem("ru", "Мария Иванова встретила Ивана в Москве 2020-05-01"),
            TextItem("empty", ""),
        ]
    )
    assert binary.error is not None and "binary" in binary.error
    assert cyrillic.error is None and [m.key for m in cyrillic.mentions] == ["date:2020-05-01"]
    assert any("ru:" in n and "script" in n for n in extractor.notes)
    assert empty.mentions == []


@pytest.fixture
def notes_folder(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "team.md").write_text(
        "# Team\n\nGrace Hopper joined Acme Corporation in Boston on 3 May 2015.\n"
        "She studies magnetic resonance imaging (MRI) for the clinic.\n"
    )
    (root / "review.md").write_text("# Review\n\nThe MRI pipeline was reviewed by Grace Hopper and Alan Turing.\n")
    return root


def _mentions(engine: Any, item_id: str) -> dict[str, Any]:
    sub = engine.neighbors([item_id], relation_types=["MENTIONS"], direction="out")
    return {sub.entities[r.dst].name: r for r in sub.relations if r.src == item_id}


def test_ingest_links_items_to_entities_with_provenance(make_engine: Callable[..., Any], notes_folder: Path) -> None:
    engine = make_engine()
    report = engine.ingest_path(notes_folder)
    assert report.knowledge_items == 2 and report.mentions > 5
    chunk = engine.get_entities(["notes:chunk:team.md#0"])[0]
    links = _mentions(engine, chunk.id)
    grace = links["Grace Hopper"]
    start, end = grace.properties["spans"][0]
    assert chunk.text[start:end] == "Grace Hopper"
    assert grace.properties["extractor"].startswith("spacy:") and 0 < grace.properties["confidence"] <= 1
    assert "Boston" in links and "3 May 2015" in links
    # the two chunks meet through Grace Hopper
    other = _mentions(engine, "notes:chunk:review.md#0")
    assert other["Grace Hopper"].dst == grace.dst
    # co-occurrence carries its evidence sentence
    sub = engine.neighbors([grace.dst], relation_types=["CO_OCCURS_WITH"])
    evidence = [r.properties["evidence"] for r in sub.relations]
    assert any("Alan Turing" in e for e in evidence)
    # acronym and expansion were merged by a recorded decision
    merges = engine.merges()
    assert any(m.rule == "acronym" and {m.a_name, m.b_name} == {"MRI", "magnetic resonance imaging"} for m in merges)
    stats = engine.stats()
    assert stats.relation_types["MENTIONS"] >= 8 and stats.entity_types["Person"] >= 2


def test_reingest_changes_nothing_and_edits_reextract_only_changed_text(
    make_engine: Callable[..., Any], notes_folder: Path
) -> None:
    engine = make_engine()
    engine.ingest_path(notes_folder)
    before = engine.stats()
    again = engine.ingest_path(notes_folder)
    assert again.entities_written == 0 and again.relations_written == 0 and again.knowledge_items == 0
    assert engine.stats().last_seq == before.last_seq
    (notes_folder / "review.md").write_text("# Review\n\nThe MRI pipeline was reviewed by Ada Lovelace.\n")
    changed = engine.ingest_path(notes_folder)
    assert changed.records_changed == 1 and changed.knowledge_items == 1
    links = _mentions(engine, "notes:chunk:review.md#0")
    assert "Ada Lovelace" in links and "Grace Hopper" not in links  # the old mention is retired


def test_unchanged_chunks_of_a_changed_file_come_from_the_cache(
    make_engine: Callable[..., Any], tmp_path: Path
) -> None:
    root = tmp_path / "long"
    root.mkdir()
    first = "# One\n\n" + "Grace Hopper wrote compilers in Arlington. " * 20
    second = "# Two\n\n" + "Alan Turing broke codes at Bletchley Park. " * 20
    (root / "doc.md").write_text(first + "\n\n" + second)
    engine = make_engine(chunk_chars=1000)
    engine.ingest_path(root)
    (root / "doc.md").write_text(first + "\n\n" + second.replace("Alan Turing", "Joan Clarke"))
    report = engine.ingest_path(root)
    assert report.knowledge_items == 1 and report.knowledge_items_cached >= 1


def test_a_failed_run_leaves_whole_batches_and_the_next_run_finishes(make_engine: Callable[..., Any]) -> None:
    from aesoperator.ingest.documents import DocumentInput, DocumentsMapper, document_records
    from aesoperator.ingest.pipeline import IngestPipeline

    engine = make_engine()
    docs = [DocumentInput(title=f"Doc {i}", text=f"Grace Hopper visited Boston in 19{50 + i}.") for i in range(6)]

    def failing() -> Iterator[Any]:
        for n, record in enumerate(document_records("d", docs)):
            if n == 4:
                raise RuntimeError("the source went away")
            yield record

    pipeline = IngestPipeline(engine.store, engine.embedder, batch_size=3, knowledge=engine.knowledge)
    with pytest.raises(RuntimeError):
        pipeline.run("d", failing(), DocumentsMapper("d", "default"))
    items = engine.store.source_items("d")
    done = [k for k in items if not k.startswith("__")]
    assert sorted(done) == ["Doc 0", "Doc 1", "Doc 2", "Doc 3"]
    for key in done:  # every committed item has its mentions with it
        assert any(r.type == "MENTIONS" for r in engine.store.get_relations(list(items[key].relation_ids)))
    assert "__resolve_pending__" in items  # resolution did not run: the next run does it
    report = pipeline.run("d", document_records("d", docs), DocumentsMapper("d", "default"))
    assert report.records_changed == 2
    assert "__resolve_pending__" not in engine.store.source_items("d")


def test_episodes_mention_what_the_documents_know(make_engine: Callable[..., Any], notes_folder: Path) -> None:
    engine = make_engine()
    engine.ingest_path(notes_folder)
    episode = engine.remember("Talked to Grace Hopper about the scanner in Boston", agent_id="ops")
    grace = next(e for e in engine.entities("Grace Hopper"))
    assert grace.id in episode.mentions  # the document's entity, in the default namespace
    sub = engine.neighbors([episode.id], relation_types=["MENTIONS"], direction="out")
    assert {e.name for e in sub.entities.values()} >= {"Grace Hopper", "Boston"}
    about = engine.search_about("Grace Hopper", namespaces=["default", "agent:ops"])
    assert episode.id in {h.id for h in about.hits} and "notes:chunk:team.md#0" in {h.id for h in about.hits}


def test_code_symbols_answer_where_defined_and_what_calls(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    engine.ingest_path(FIXTURE_CODE)
    stats = engine.stats()
    for kind in ("Module", "Class", "Function", "Method"):
        assert stats.entity_types[kind] > 0
    for rel in ("DEFINES", "IMPORTS", "CALLS", "INHERITS"):
        assert stats.relation_types[rel] > 0
    reports = engine.code_symbol("OrderService")
    service = next(r for r in reports if r.symbol.qualified_name == "com.example.shop.OrderService")
    assert service.symbol.path == "java/OrderService.java" and service.defined_in
    # callers are found from the graph
    any_call = next(
        rel for batch in engine.store.iter_relations() for rel in batch if rel.type == "CALLS" and rel.is_live()
    )
    callee = engine.get_entities([any_call.dst])[0]
    callers = [link.symbol.id for r in engine.code_symbol(callee.name) for link in r.incoming if link.type == "CALLS"]
    assert any_call.src in callers


def test_a_new_entity_is_made_in_the_items_own_namespace_whatever_order_links_come_in(tmp_path: Path) -> None:
    """An agent's episode that may link to the shared memory graph (its own namespace listed first
    among the namespaces it reads) makes its new entities in its own namespace, with ids that name
    it; and it links to the shared graph's entity once that exists."""
    from aesoperator.engine.stores.embedded import EmbeddedGraphStore
    from aesoperator.graph_schema.models import Entity
    from aesoperator.ingest.extract.stage import KnowledgeExtractionStage

    store = EmbeddedGraphStore(tmp_path / "data")
    try:
        stage = KnowledgeExtractionStage(store, DefaultExtractor(use_model=False))

        def episode(eid: str, namespace: str) -> Entity:
            return Entity(id=eid, type="Episode", name="turn", text="We met Dana Ruiz from NASA.", namespace=namespace)

        agent = stage.process([episode("ep1", "agent:a")], link_namespaces=["agent:a", "memory-graph"])
        assert agent.entities and {e.namespace for e in agent.entities} == {"agent:a"}
        assert all("agent:a/" in e.id and "memory-graph" not in e.id for e in agent.entities)
        shared = stage.process([episode("ep2", "memory-graph")], link_namespaces=["memory-graph"])
        store.upsert(shared.entities)
        linked = stage.process([episode("ep3", "agent:a")], link_namespaces=["agent:a", "memory-graph"])
        assert linked.entities == []  # every mention found the shared graph's entity
        targets = {r.dst for r in linked.relations["ep3"] if r.type == "MENTIONS"}
        assert targets == {e.id for e in shared.entities}
    finally:
        store.close()
