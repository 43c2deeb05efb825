"""The in-memory keyword index answers exactly what the embedded store's FTS5 keyword search
answers (same terms, same bm25, same order, same filters and pruning), stays exact through
updates, deletes, merges and restarts, and rebuilds itself from the store when its files are bad."""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aesoperator.engine import keyword_index as keyword_module
from aesoperator.engine.fts_terms import FtsTermMaker
from aesoperator.engine.keyword_index import KeywordIndex
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.engine.stores.embedded_schema import FTS_TOKENIZER
from aesoperator.graph_schema.models import Entity

REPO = Path(__file__).resolve().parents[1]
TRICKY = [
    "Ölçer façade naïve Ærø crème brûlée São Paulo",
    "epidemiology pathology technologies possibly reversibly generalization relational",
    "snake_case_name v2.3-beta x86_64 3.14159 ½ ² Ⅻ",
    "東京都 北京市 서울특별시 กรุงเทพมหานคร हिन्दी العربية",
    "emoji 🙂 and symbols © ® ™ — “quoted” ‘single’",
    "running runs ran runner RUNNING Run",
    "... !!! ???",
]


def corpus_texts() -> list[str]:
    """Paragraphs of this repository's own documentation: real English with code words."""
    texts: list[str] = []
    for path in sorted(REPO.glob("*.md")) + sorted((REPO / "benchmarks").glob("*.md")):
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            block = block.strip()
            if 40 <= len(block) <= 3000:
                texts.append(block)
    return texts + TRICKY


def make_entities(texts: list[str], seed: int = 7, prefix: str = "e") -> list[Entity]:
    rng = random.Random(seed)
    out = []
    for i, text in enumerate(texts):
        words = text.split()
        name = " ".join(words[:4]) if words else f"empty {i}"
        out.append(
            Entity(
                id=f"{prefix}{i:05d}",
                type=rng.choice(["Chunk", "Document", "Concept"]),
                name=name[:200] or f"n{i}",
                text=text,
                namespace=rng.choice(["ns1", "ns2", "ns3"]),
            )
        )
    return out


def queries(texts: list[str], n: int = 120, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    words = [w for t in texts for w in t.split()]
    asked = [" ".join(rng.sample(words, rng.randint(1, 8))) for _ in range(n)]
    return asked + TRICKY[:-1] + ["the of and", "epidemiologies technology", "zzzunknownzzz", "run running"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedGraphStore]:
    s = EmbeddedGraphStore(tmp_path / "store")
    yield s
    s.close()


def assert_same_answers(store: EmbeddedGraphStore, index: KeywordIndex, asked: list[str]) -> None:
    filters: list[tuple[list[str] | None, list[str] | None]] = [
        (None, None),
        (["ns1"], None),
        (["ns2", "ns3"], ["Chunk"]),
        (["missing"], None),
    ]
    for q in asked:
        for namespaces, types in filters:
            want = store.keyword_search(q, 15, namespaces=namespaces, types=types)
            got = index.search(q, 15, namespaces=namespaces, types=types)
            assert [i for i, _ in got] == [i for i, _ in want], (q, namespaces, types)
            for (_, a), (_, b) in zip(got, want, strict=True):
                assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def assert_same_names(store: EmbeddedGraphStore, index: KeywordIndex, texts: list[str]) -> None:
    grams = [" ".join(t.split()[:4]) for t in texts] + [" ".join(t.split()[:4]).upper() for t in texts[:20]]
    grams += ["no such name", ""]
    for namespaces, types in ((None, None), (["ns1"], None), (["ns2", "ns3"], ["Chunk", "Concept"]), ([], None)):
        want = store.name_lookup(grams, namespaces=namespaces, types=types)
        assert index.name_lookup(grams, namespaces=namespaces, types=types) == want
        assert want or namespaces == []


def test_terms_are_fts5_terms() -> None:
    """Every text's terms and token count are what an FTS5 table with the store's tokenizer keeps."""
    texts = corpus_texts()
    maker = FtsTermMaker()
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize = '{FTS_TOKENIZER}')")
    db.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", enumerate(texts))
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    expected: dict[int, list[str]] = {i: [] for i in range(len(texts))}
    for doc, term in db.execute("SELECT doc, term FROM v ORDER BY doc, offset"):
        expected[doc].append(term)
    for i, text in enumerate(texts):
        assert maker.terms(text) == expected[i], text[:80]
    assert maker.terms("Epidemiology") == ["epidemiolog"]  # SQLite's Porter variant, not the reference one


def test_same_ranking_as_the_store(store: EmbeddedGraphStore, tmp_path: Path) -> None:
    texts = corpus_texts()
    store.upsert(make_entities(texts))
    index = KeywordIndex(tmp_path / "kw")
    report = index.sync(store)
    assert report.rebuilt and report.count == len(texts)
    assert_same_answers(store, index, queries(texts))
    assert_same_names(store, index, texts)


def test_pruning_matches_the_store(store: EmbeddedGraphStore, tmp_path: Path) -> None:
    """With pruning on (as on large stores), the same common terms are left out on both sides."""
    texts = corpus_texts()
    store.upsert(make_entities(texts))
    store.keyword_prune_min_docs = 1
    store.keyword_max_df = 0.05
    index = KeywordIndex(tmp_path / "kw", max_df=0.05, prune_min_docs=1)
    index.sync(store)
    asked = queries(texts)
    pruned = [q for q in asked if len(index.query_terms(q)) > 1]
    assert pruned
    assert_same_answers(store, index, asked)


def test_updates_deletes_and_merges_stay_exact(
    store: EmbeddedGraphStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Incremental catch-up after edits, deletes and re-adds, with merges forced often, ranks like
    the store and like an index rebuilt from scratch."""
    monkeypatch.setattr(keyword_module, "MERGE_MIN_POSTINGS", 500)
    texts = corpus_texts()
    entities = make_entities(texts)
    half = len(entities) // 2
    store.upsert(entities[:half])
    index = KeywordIndex(tmp_path / "kw")
    index.sync(store)
    rng = random.Random(11)
    for round_ in range(4):
        store.upsert(entities[half + round_ * 10 : half + (round_ + 1) * 10])
        edited = [e.model_copy(update={"text": rng.choice(texts)}) for e in rng.sample(entities[:half], 15)]
        store.upsert(edited)
        store.delete_entities([e.id for e in rng.sample(entities[:half], 8)])
        report = index.sync(store)
        assert not report.rebuilt and report.changes > 0
    asked = queries(texts, n=60)
    assert_same_answers(store, index, asked)
    assert_same_names(store, index, texts)
    fresh = KeywordIndex(None)
    fresh.sync(store)
    for q in asked:
        got, want = index.search(q, 20), fresh.search(q, 20)
        assert [i for i, _ in got] == [i for i, _ in want], q
        assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9)
    assert len(index) == len(fresh) == store.stats().entities


def test_saved_index_is_reused_and_bad_files_rebuild(store: EmbeddedGraphStore, tmp_path: Path) -> None:
    texts = corpus_texts()
    store.upsert(make_entities(texts))
    first = KeywordIndex(tmp_path / "kw")
    first.sync(store)  # rebuilds and saves
    asked = queries(texts, n=30)

    store.upsert(make_entities(texts[:5], prefix="late"))  # written after the save: replayed
    second = KeywordIndex(tmp_path / "kw")
    report = second.sync(store)
    assert not report.rebuilt and report.added == 5
    assert_same_answers(store, second, asked)
    assert_same_names(store, second, texts)

    manifest = json.loads((tmp_path / "kw" / "manifest.json").read_text())
    data = tmp_path / "kw" / manifest["file"]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    third = KeywordIndex(tmp_path / "kw")
    report = third.sync(store)
    assert report.rebuilt and "checksum" in report.reason
    assert_same_answers(store, third, asked)

    (tmp_path / "kw" / "manifest.json").write_text("{not json")
    fourth = KeywordIndex(tmp_path / "kw")
    assert fourth.sync(store).rebuilt
    assert_same_answers(store, fourth, asked[:10])


def test_rebuilding_or_loading_again_in_one_instance(store: EmbeddedGraphStore, tmp_path: Path) -> None:
    """A second rebuild, or a load after a build, starts from a new vocabulary: nothing of the
    first one may leak into the term ids."""
    texts = corpus_texts()
    store.upsert(make_entities(texts[:60]))
    index = KeywordIndex(tmp_path / "kw")
    index.sync(store)
    store.upsert(make_entities(texts[60:], prefix="more"))
    index.rebuild(store)
    asked = queries(texts, n=30)
    assert_same_answers(store, index, asked)
    other = KeywordIndex(None)
    other.sync(store)  # a different vocabulary order: built from the whole store at once
    index.load()
    assert_same_answers(store, index, asked)
    index.upsert(make_entities(texts[:5], prefix="late"))
    assert index.search(texts[0], 3)


def test_index_ahead_of_the_store_rebuilds(tmp_path: Path) -> None:
    """An index saved from a store with more history than the one it is opened on is not trusted."""
    texts = corpus_texts()[:60]
    big = EmbeddedGraphStore(tmp_path / "big")
    big.upsert(make_entities(texts))
    big.upsert(make_entities(texts[:10], prefix="x"))
    KeywordIndex(tmp_path / "kw").sync(big)
    big.close()
    small = EmbeddedGraphStore(tmp_path / "small")
    small.upsert(make_entities(texts[:20]))
    index = KeywordIndex(tmp_path / "kw")
    report = index.sync(small)
    assert report.rebuilt and len(index) == 20
    small.close()


def test_engine_channels_agree(make_engine) -> None:  # type: ignore[no-untyped-def]
    """The engine's keyword channel from the in-memory index equals the store-backed one."""
    texts = corpus_texts()[:150]
    memory = make_engine(keyword_index="memory")
    memory.upsert(make_entities(texts), embed=False)
    store_backed = make_engine(data_dir=memory.settings.data_dir, keyword_index="store")
    names = [" ".join(t.split()[:4]) + " and more" for t in texts[:25]]
    for q in queries(texts, n=25) + names:
        for channels in (("keyword",), ("name",), ("keyword", "name")):
            a = memory.search(q, k=8, hops=0, channels=channels)
            b = store_backed.search(q, k=8, hops=0, channels=channels)
            assert [h.id for h in a.hits] == [h.id for h in b.hits], (q, channels)
    memory.upsert(make_entities(["a brand new paragraph about quokkas"], prefix="new"), embed=False)
    assert memory.search("quokkas", k=3, hops=0, channels=("keyword",)).hits[0].id == "new00000"


def test_close_saves_after_a_long_replay(
    store: EmbeddedGraphStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes replayed since the last save are saved at close once they are many, so the next
    open loads them instead of replaying them again; a few are simply replayed."""
    monkeypatch.setattr(keyword_module, "SAVE_AT_CLOSE_AFTER", 20)
    texts = corpus_texts()
    store.upsert(make_entities(texts[:30]))
    first = KeywordIndex(tmp_path / "kw")
    first.sync(store)
    store.upsert(make_entities(texts[30:35], prefix="a"))
    first.sync(store)
    first.close()  # 5 rows replayed: not saved
    second = KeywordIndex(tmp_path / "kw")
    assert second.sync(store).added == 5
    store.upsert(make_entities(texts[35:80], prefix="b"))
    second.sync(store)
    second.close()  # 45 more: saved
    third = KeywordIndex(tmp_path / "kw")
    report = third.sync(store)
    assert not report.rebuilt and report.changes == 0 and len(third) == 80
    assert_same_answers(store, third, queries(texts, n=20))


def test_close_saves_a_small_index_after_a_replay_a_tenth_its_size(
    store: EmbeddedGraphStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small index is saved at close once the rows replayed reach a tenth of its documents (and
    SAVE_AT_CLOSE_MIN), long before SAVE_AT_CLOSE_AFTER: otherwise every short-lived process on a
    freshly ingested store (a cold `aesop search`) would replay the same rows again."""
    monkeypatch.setattr(keyword_module, "SAVE_AT_CLOSE_AFTER", 10**9)
    monkeypatch.setattr(keyword_module, "SAVE_AT_CLOSE_MIN", 4)
    texts = corpus_texts()
    store.upsert(make_entities(texts[:60]))
    first = KeywordIndex(tmp_path / "kw")
    first.sync(store)  # a rebuild: saved
    store.upsert(make_entities(texts[60:63], prefix="a"))
    first.sync(store)
    first.close()  # 3 rows replayed, under max(4, 6): not saved
    second = KeywordIndex(tmp_path / "kw")
    assert second.sync(store).added == 3
    store.upsert(make_entities(texts[63:68], prefix="b"))
    second.sync(store)
    second.close()  # 8 rows since the load: saved
    third = KeywordIndex(tmp_path / "kw")
    report = third.sync(store)
    assert not report.rebuilt and report.changes == 0 and len(third) == 68


def extracted_entities(texts: list[str], per_text: int = 6) -> list[Entity]:
    """Short name documents such as extraction adds: several per passage, named by its words."""
    out = []
    for i, text in enumerate(texts):
        words = [w for w in text.split() if w.isalpha()]
        for j, word in enumerate(words[:per_text]):
            out.append(Entity(id=f"knowledge:person:{i}-{j}", type="Person", name=word, text=word, namespace="ns1"))
    return out


def test_extracted_entities_leave_item_scores_unchanged(
    store: EmbeddedGraphStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of short extracted-name documents do not move N, the average length or any
    document frequency: items score exactly as without them, through incremental updates, merges,
    a save and a load, while typed searches and name look-ups still find the extracted entities."""
    monkeypatch.setattr(keyword_module, "MERGE_MIN_POSTINGS", 500)
    texts = corpus_texts()
    store.upsert(make_entities(texts))
    plain = KeywordIndex(None)
    plain.sync(store)
    asked = queries(texts, n=60)
    before = {q: plain.search(q, 20) for q in asked}
    extracted = extracted_entities(texts)
    index = KeywordIndex(tmp_path / "kw")
    index.sync(store)
    store.upsert(extracted[: len(extracted) // 2])
    index.sync(store)  # incremental, with merges
    store.upsert(extracted[len(extracted) // 2 :])
    index.sync(store)
    index.save()
    loaded = KeywordIndex(tmp_path / "kw")
    loaded.load()
    rebuilt = KeywordIndex(None)
    rebuilt.sync(store)
    for candidate in (index, loaded, rebuilt):
        assert len(candidate) == len(texts) + len(extracted)
        for q in asked:
            got = candidate.search(q, 20, include_extracted=False)
            assert [i for i, _ in got] == [i for i, _ in before[q]], q
            assert [s for _, s in got] == pytest.approx([s for _, s in before[q]], rel=1e-9), q
        person = extracted[0]
        found = candidate.search(person.name, 50, types=["Person"])
        assert person.id in [i for i, _ in found]
        assert all(i.startswith("knowledge:") for i, _ in found)
        assert person.id in candidate.name_lookup([person.name])[person.name.lower()]
    # a query word found only in extracted names still ranks them (their own idf is finite)
    store.upsert([Entity(id="knowledge:person:zz", type="Person", name="Zyxwv", text="Zyxwv", namespace="ns1")])
    index.sync(store)
    assert index.search("zyxwv", 5) == [("knowledge:person:zz", pytest.approx(index.search("zyxwv", 5)[0][1]))]
    assert index.search("zyxwv", 5, include_extracted=False) == []


@pytest.mark.parametrize("memo_max", [None, 7], ids=["memo", "memo-cleared-mid-batch"])
def test_batch_postings_equal_the_per_document_counts_to_the_bit(
    memo_max: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The arrays a full rebuild uses give each document the weighted counts, length and distinct
    terms that the incremental path computes, including words FTS5 cuts into several terms or none
    (combining marks, emoji) and names that repeat words of the text; also when the word memo
    overflows and is cleared while the batch is counted."""
    from aesoperator.engine import keyword_vocabulary
    from aesoperator.engine.keyword_vocabulary import MULTI, KeywordVocabulary

    if memo_max is not None:
        monkeypatch.setattr(keyword_vocabulary, "WORD_MEMO_MAX", memo_max)
    from aesoperator.engine.stores.embedded import BM25_WEIGHTS

    texts = [
        *corpus_texts()[:40],
        "— …",  # no term at all
        "naïve café ﬁnance — résumé; e\u0301te\u0301 and x\u0308y\u0301z 🙂🙂 data-driven",
        "Ｆｕｌｌｗｉｄｔｈ text and 東京 タワー, repeated repeated repeated",
    ]
    names = [t.split(".")[0][:40] or "untitled" for t in texts]
    names[3] = texts[3][:60]  # a name that repeats the text's words
    weights = (BM25_WEIGHTS[0] / 3, BM25_WEIGHTS[1] * 1.1)  # weights that are not small integers
    terms = FtsTermMaker(FTS_TOKENIZER)
    try:
        per_document = KeywordVocabulary(terms, weights)
        batch_vocabulary = KeywordVocabulary(terms, weights)
        expected = per_document.documents(
            [
                Entity(id=f"d{i}", type="Document", name=n, text=t)
                for i, (n, t) in enumerate(zip(names, texts, strict=True))
            ]
        )
        batch = batch_vocabulary.batch_postings(names, texts)
        assert batch_vocabulary.term_str == per_document.term_str  # the same term ids, in the same order
        if memo_max is None:
            assert MULTI in batch_vocabulary.word_ids.values(), "no word of several terms or none was exercised"
        for doc, (counts, length) in enumerate(expected):
            mine = batch.docs == doc
            got = dict(zip(batch.terms[mine].tolist(), batch.freqs[mine].tolist(), strict=True))
            assert got == {tid: float(np.float32(f)) for tid, f in counts.items()}, doc
            assert batch.lengths[doc] == length and batch.distinct[doc] == len(counts), doc
        assert batch.docs.tolist() == sorted(batch.docs.tolist())
    finally:
        terms.close()


def test_pruned_searches_equal_every_posting_scored(
    store: EmbeddedGraphStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MaxScore pruning (`keyword_pruning`), forced on for every search of several words, gives
    the ids and the bit-identical scores of scoring every posting: with filters, with extracted
    entities left out, for small and large k, with dead postings not yet merged away, and after
    merges. It does leave documents unscored in some searches (else the test proves nothing)."""
    monkeypatch.setattr(keyword_module, "MERGE_MIN_POSTINGS", 10**9)  # dead postings stay
    texts = corpus_texts()
    entities = make_entities(texts)
    store.upsert(entities + extracted_entities(texts))
    pruned, every = KeywordIndex(None), KeywordIndex(None)
    rng = random.Random(5)
    asked = queries(texts, n=80) + [" ".join(rng.sample(texts, 1)[0].split()[:12]) for _ in range(40)]
    filters: list[tuple[list[str] | None, list[str] | None]] = [
        (None, None),
        (["ns1"], None),
        (["ns2", "ns3"], ["Chunk"]),
    ]

    def compare() -> None:
        for index in (pruned, every):
            index.sync(store)
        pruned._post.prune_from = 0
        every._post.prune_from = 10**12
        for q in asked:
            for (namespaces, types), k, extracted in itertools.product(filters, (1, 5, 20, 60), (True, False)):
                got = pruned.search(q, k, namespaces=namespaces, types=types, include_extracted=extracted)
                want = every.search(q, k, namespaces=namespaces, types=types, include_extracted=extracted)
                assert got == want, (q, namespaces, types, k, extracted)

    compare()
    assert pruned._post.pruned_searches > 50
    assert every._post.pruned_searches == 0
    store.upsert([e.model_copy(update={"text": rng.choice(texts)}) for e in rng.sample(entities, 40)])
    store.delete_entities([e.id for e in rng.sample(entities, 30)])
    compare()
    assert pruned._post.dead_postings > 0
    for index in (pruned, every):
        index._post.merge(len(index._vocab))
    assert pruned._post.dead_postings == 0
    compare()
