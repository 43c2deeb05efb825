"""Code symbols get no vectors (`vector_policy`): ingest, `upsert`, `embed_missing` and
`aesop rebuild-index` agree, on both stores; vectors an earlier version stored for symbols are
dropped once and never come back; symbols are still found by name, by keywords and through the
graph."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aesoperator.cli import app
from aesoperator.engine.stores.base import WriteBatch
from aesoperator.engine.vector_policy import has_vector, is_code_symbol
from aesoperator.graph_schema.models import Entity

FIXTURE_CODE = Path(__file__).parent / "fixtures" / "code"
BACKENDS = [pytest.param("embedded", id="embedded"), pytest.param("neo4j", id="neo4j", marks=pytest.mark.neo4j)]


@pytest.fixture(params=BACKENDS)
def engine(
    request: pytest.FixtureRequest, tmp_path: Path, make_engine: Callable[..., Any], embedder: Any
) -> Iterator[Any]:
    if request.param == "embedded":
        yield make_engine()
        return
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    store = request.getfixturevalue("neo4j_store_factory")()
    built = ContextEngine(store, settings=Settings(data_dir=tmp_path / "replica"), embedder=embedder)
    yield built
    built.close()


@pytest.fixture
def code(tmp_path: Path) -> Path:
    target = tmp_path / "code"
    shutil.copytree(FIXTURE_CODE, target)
    return target


def _entities(engine: Any) -> list[Entity]:
    return [e for batch in engine.store.iter_entities() for e in batch]


def _stored_vector_ids(engine: Any) -> set[str]:
    return {i for ids, _, _ in engine.store.iter_vectors(engine.embedder.model_name) for i in ids}


def _indexed(engine: Any, ids: set[str]) -> set[str]:
    index = engine.index  # synced with the store's change log on access
    return {i for i in ids if i in index}


def _as_an_earlier_version_stored_them(engine: Any, symbols: list[Entity]) -> None:
    """Symbol vectors written the way ingest wrote them before symbols were left out."""
    from aesoperator.engine.embeddings import embedding_text
    from aesoperator.graph_schema.ids import content_hash

    texts = [embedding_text(e) for e in symbols]
    matrix = engine.embedder.embed(texts)
    vectors = {e.id: (content_hash(t), matrix[i]) for i, (e, t) in enumerate(zip(symbols, texts, strict=True))}
    engine.store.write(WriteBatch(vectors=vectors, vector_model=engine.embedder.model_name))


def test_symbols_have_no_vectors_after_ingest_and_rebuild(engine: Any, code: Path) -> None:
    report = engine.ingest_path(code)
    entities = _entities(engine)
    symbols = {e.id for e in entities if is_code_symbol(e)}
    assert len(symbols) >= 30 and {e.type for e in entities if e.id in symbols} >= {"Class", "Function", "Method"}
    stored = _stored_vector_ids(engine)
    assert not stored & symbols
    # the invariant: every entity the policy admits has a vector, and nothing else does
    assert stored == {e.id for e in entities if has_vector(e)}
    assert engine.stats().vectors == len(stored) and report.texts_embedded <= len(stored)
    assert not _indexed(engine, symbols) and len(engine.index) == len(stored)

    # rebuild-index: nothing is missing, so nothing is embedded, and symbols stay out
    seq = engine.store.last_seq()
    assert engine.embed_missing() == 0
    assert engine.store.last_seq() == seq
    rebuilt = engine.rebuild_index()
    assert rebuilt.added == len(stored) and not _indexed(engine, symbols)


def test_vectors_an_earlier_version_stored_for_symbols_are_dropped_once(engine: Any, code: Path) -> None:
    engine.ingest_path(code)
    symbols = [e for e in _entities(engine) if is_code_symbol(e)]
    _as_an_earlier_version_stored_them(engine, symbols)
    symbol_ids = {e.id for e in symbols}
    assert _indexed(engine, symbol_ids) == symbol_ids  # the index catches up with the store

    # re-ingesting a changed file drops the vectors of the symbols it writes
    orders = code / "python" / "shop" / "orders.py"
    orders.write_text(orders.read_text() + "\n\ndef refund(order: Order) -> float:\n    return -order.total()\n")
    report = engine.ingest_path(code)
    in_orders = {e.id for e in symbols if e.properties.get("path", "").endswith("orders.py")}
    assert report.records_changed == 1 and report.vectors_deleted >= len(in_orders) > 0
    assert not _stored_vector_ids(engine) & in_orders and not _indexed(engine, in_orders)
    assert _indexed(engine, symbol_ids - in_orders)  # files not read again keep theirs until a rebuild

    # embed_missing (what `aesop rebuild-index` runs first) drops the rest and embeds nothing
    assert engine.embed_missing() == 0
    assert not _stored_vector_ids(engine) & symbol_ids and not _indexed(engine, symbol_ids)
    # and once done, it stays done: no write, no index change, no loop
    seq, size = engine.store.last_seq(), len(engine.index)
    assert engine.embed_missing() == 0 and engine.store.last_seq() == seq
    assert engine.rebuild_index().added == size and not _indexed(engine, symbol_ids)


def test_upsert_embeds_what_the_policy_admits_and_drops_the_rest(engine: Any) -> None:
    symbol = Entity(
        id="app:symbol:shop.orders.place",
        type="Function",
        name="shop.orders.place",
        text="function shop.orders.place in shop/orders.py\ndef place(order: Order) -> str",
        properties={"qualified_name": "shop.orders.place", "kind": "function", "defined": True},
        source="app",
    )
    note = Entity(id="app:note:1", type="Document", name="Placing orders", text="How orders are placed.", source="app")
    # a Function without a qualified name is not a code symbol: it is embedded like any entity
    other = Entity(id="app:fn:1", type="Function", name="billing", text="The billing function of the team.")
    engine.upsert([symbol, note, other])
    assert _stored_vector_ids(engine) == {"app:note:1", "app:fn:1"}
    assert _indexed(engine, {symbol.id, note.id, other.id}) == {note.id, other.id}


def test_functions_and_classes_are_still_found_by_name_and_from_the_graph(engine: Any, code: Path) -> None:
    engine.ingest_path(code)
    [place] = [e for e in _entities(engine) if is_code_symbol(e) and e.name.endswith("orders.place")]
    hits = engine.search("place", k=10).hits
    assert place.id in {h.id for h in hits}  # the name channel
    typed = engine.search("orders that are rushed and cost a fee", k=5, types=["Class"]).hits
    assert any(h.name.endswith("RushOrder") for h in typed)  # keywords and the chunk's DEFINES
    [report] = [r for r in engine.code_symbol("place") if r.symbol.id == place.id]
    assert report.defined_in and {link.symbol.qualified_name for link in report.outgoing} >= {
        place.name.rsplit(".", 1)[0] + ".helper"
    }


def test_cli_rebuild_index_leaves_symbols_out(tmp_path: Path, code: Path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    result = runner.invoke(app, ["--data-dir", str(data), "ingest", str(code)])
    assert result.exit_code == 0, result.stdout
    shutil.rmtree(data / "index")
    result = runner.invoke(app, ["--json", "--data-dir", str(data), "rebuild-index"])
    assert result.exit_code == 0, result.stdout
    payload = json.loads(result.stdout)
    stats = json.loads(runner.invoke(app, ["--json", "--data-dir", str(data), "stats"]).stdout)
    assert payload["embedded"] == 0 and payload["added"] == stats["vectors"]
    assert sum(stats["entity_types"].get(t, 0) for t in ("Function", "Method", "Class")) > 0
    assert stats["vectors"] < stats["entities"]
