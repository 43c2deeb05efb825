"""Deterministic benchmark graphs built from the public evaluation corpora.

The texts are real: HotpotQA articles (sentences grouped per title), MuSiQue paragraphs (grouped per
title) and SciFact abstracts, read from the evaluation data folder (see ``evaldata/README.md``).
Each article becomes

- a ``Document`` entity (title plus the opening of its text) and its ``Chunk`` entities
  (a few consecutive sentences; a MuSiQue paragraph is one chunk), joined by ``CONTAINS`` and by
  ``NEXT`` between consecutive chunks;
- for the Wikipedia corpora, a ``Person`` or ``Concept`` entity named by the article's title (its
  text is the article's first sentence), which the document ``MENTIONS``;
- for SciFact, a ``Concept`` for every abbreviation an abstract defines ("myeloid-derived
  suppressor cells (MDSC)"), so common ones (DNA, MRI, HIV) become hubs as they do in real graphs.

Every chunk ``MENTIONS`` the title entities and abbreviations that occur in its text, and a
document ``REFERENCES`` the documents whose title entity it mentions (Wikipedia) or with which it
shares a rare abbreviation (SciFact, at most five documents per abbreviation). Degrees are
therefore those of the text: most chunks mention nothing or one thing, a few entities are
mentioned thousands of times.

One pass over the three corpora (a *cycle*) gives about 36,000 entities. Larger graphs repeat the
corpora with deterministic variations: cycle ``c > 0`` uses the source name ``<dataset>~c`` (so
every id differs), shuffles each article's sentences with a generator seeded by
``(SEED, cycle, dataset, article)`` and groups them into chunks of two to four sentences. No text
is invented: every string comes from the corpora. Within a cycle articles of the three corpora are
interleaved in proportion to their sizes, so any prefix of the stream has the same mix.

The stream is ordered so that every relation comes after both of its endpoints: writing it in
batches of any size never refers to an entity that is not stored yet.
"""

from __future__ import annotations

import ast
import csv
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aesoperator.graph_schema.ids import entity_id
from aesoperator.graph_schema.models import Entity, Provenance, Relation

SEED = 20_240_917
NAMESPACE = "default"
DATASETS = ("hotpotqa", "musique", "scifact")
WIKI_SOURCE = "wiki"
DOC_PREFIX_CHARS = 300
MAX_TITLE_TOKENS = 6
MAX_SHARED_ABBREVIATION_DOCS = 5
MAX_REFERENCES_PER_DOC = 8

_TOKEN = re.compile(r"\w+(?:['’.\-]\w+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)
_ABBREVIATION = re.compile(r"\(([A-Z][A-Za-z0-9\-]{0,8}[A-Z0-9])s?\)")
_PARENTHETICAL = re.compile(r"\s*\([^)]*\)\s*$")
# "(born 12 May 1970)", "(1881 – 1955)", "(c. 1490–1556)": a person's dates after the name.
_LIFE_DATES = re.compile(r"\((?:[^()]*\bborn\b|[^()]*\b\d{3,4}\s*[–\-]\s*(?:c\.\s*)?\d{0,4})")
_PERSON_NAME = re.compile(r"^[A-Z][\w'’.\-]*(?: (?:[A-Z][\w'’.\-]*|de|van|von|da|del|la|le|bin|al)){1,3}$")
_SINGLE_WORD_STOP = frozenset({"The", "This", "These", "There", "Here", "When", "After", "Before", "During"})


def default_data_dir(repo_root: Path | None = None) -> Path:
    """``../shared/evaldata`` relative to the repository root."""
    root = repo_root or Path(__file__).resolve().parents[1]
    return (root / ".." / "shared" / "evaldata").resolve()


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def parse_sentence_list(raw: str) -> list[str]:
    """SciFact abstracts are stored as the printed form of a list of strings (items separated
    by newlines, not commas); read each quoted item as a Python literal."""
    out = []
    for match in _QUOTED.finditer(raw):
        try:
            value = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            value = match.group(0)[1:-1]
        if isinstance(value, str) and value.strip():
            out.append(value.strip())
    return out


# -- the corpora ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Article:
    """One document of a corpus: paragraphs of sentences."""

    dataset: str
    key: str
    title: str
    paragraphs: tuple[tuple[str, ...], ...]
    uri: str

    @property
    def sentences(self) -> list[str]:
        return [s for p in self.paragraphs for s in p]


@dataclass(frozen=True, slots=True)
class Subject:
    """A title entity (Wikipedia corpora) or a defined abbreviation (SciFact)."""

    kind: str  # "person", "concept" or "term"
    type: str  # entity type
    name: str
    text: str
    source: str  # base source name; cycles add a suffix
    uri: str


@dataclass
class Corpus:
    """The three corpora in interleaved order, with the mentions of every sentence precomputed."""

    articles: list[Article]
    subjects: dict[str, Subject]  # subject key -> subject
    own_subject: dict[tuple[str, str], str]  # (dataset, article key) -> its title subject
    mentions: dict[tuple[str, str], list[tuple[str, ...]]]  # article -> per sentence, subject keys
    references: dict[tuple[str, str], list[tuple[str, str]]]  # article -> referenced articles
    counts: dict[str, int] = field(default_factory=dict)

    def sentence_mentions(self, article: Article) -> dict[str, tuple[str, ...]]:
        found = self.mentions.get((article.dataset, article.key), [])
        return dict(zip(article.sentences, found, strict=False))


def _wiki_uri(title: str) -> str:
    return "https://en.wikipedia.org/wiki/" + quote(title.replace(" ", "_"), safe="()_,'-")


def _load_hotpotqa(folder: Path) -> list[Article]:
    data = json.loads((folder / "corpus.json").read_text(encoding="utf-8"))
    out = []
    for title, sentences in data.items():
        kept = tuple(s.strip() for s in sentences if s and s.strip())
        if kept:
            out.append(Article("hotpotqa", title, title, (kept,), _wiki_uri(title)))
    return out


def _load_musique(folder: Path) -> list[Article]:
    data = json.loads((folder / "corpus.json").read_text(encoding="utf-8"))
    by_title: dict[str, list[tuple[str, ...]]] = {}
    for item in data:
        title = str(item.get("title") or "").strip()
        sentences = tuple(split_sentences(str(item.get("text") or "")))
        if title and sentences:
            by_title.setdefault(title, []).append(sentences)
    return [Article("musique", t, t, tuple(ps), _wiki_uri(t)) for t, ps in by_title.items()]


def _load_scifact(folder: Path) -> list[Article]:
    csv.field_size_limit(1 << 26)
    out = []
    with (folder / "corpus.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            sentences = tuple(parse_sentence_list(row.get("abstract") or ""))
            title = (row.get("title") or "").strip()
            if sentences and title:
                doc_id = str(row["doc_id"]).strip()
                uri = f"https://scifact.example/corpus/{doc_id}"
                out.append(Article("scifact", doc_id, title, (sentences,), uri))
    return out


_LOADERS = {"hotpotqa": _load_hotpotqa, "musique": _load_musique, "scifact": _load_scifact}


def _interleave(groups: dict[str, list[Article]]) -> list[Article]:
    """Merge the corpora so that every prefix holds them in proportion to their sizes."""
    keyed: list[tuple[float, str, int, Article]] = []
    for name, items in groups.items():
        n = len(items)
        keyed.extend(((i + 0.5) / n, name, i, a) for i, a in enumerate(items))
    keyed.sort(key=lambda t: (t[0], t[1], t[2]))
    return [a for *_, a in keyed]


def _title_subject(article: Article) -> Subject:
    first = article.paragraphs[0][0]
    bare = _PARENTHETICAL.sub("", article.title).strip() or article.title
    person = bool(_PERSON_NAME.match(bare)) and bool(_LIFE_DATES.search(first[: len(bare) + 120]))
    kind, etype = ("person", "Person") if person else ("concept", "Concept")
    return Subject(kind, etype, article.title, first, WIKI_SOURCE, article.uri)


def _phrases(subjects: dict[str, Subject]) -> dict[tuple[str, ...], str]:
    """Token sequences (case-sensitive) that name a title subject."""
    bare_owner: dict[tuple[str, ...], set[str]] = defaultdict(set)
    out: dict[tuple[str, ...], str] = {}
    for key, subject in subjects.items():
        full = tuple(tokens(subject.name))
        if 0 < len(full) <= MAX_TITLE_TOKENS:
            if len(full) == 1 and (len(full[0]) < 4 or full[0] in _SINGLE_WORD_STOP or not full[0][0].isupper()):
                continue
            out[full] = key
        bare = tuple(tokens(_PARENTHETICAL.sub("", subject.name)))
        if bare != full and 2 <= len(bare) <= MAX_TITLE_TOKENS:
            bare_owner[bare].add(key)
    for bare, owners in bare_owner.items():
        if len(owners) == 1 and bare not in out:  # an ambiguous short form names nobody
            out[bare] = next(iter(owners))
    return out


def _match(words: list[str], phrases: dict[tuple[str, ...], str], longest: int) -> list[str]:
    found: dict[str, None] = {}
    i = 0
    while i < len(words):
        step = 1
        for n in range(min(longest, len(words) - i), 0, -1):
            key = phrases.get(tuple(words[i : i + n]))
            if key is not None:
                found.setdefault(key, None)
                step = n
                break
        i += step
    return list(found)


def load_corpus(data_dir: Path, datasets: Iterable[str] = DATASETS) -> Corpus:
    """Read the corpora that exist under `data_dir` (a missing folder is skipped)."""
    groups: dict[str, list[Article]] = {}
    for name in datasets:
        folder = data_dir / name
        if (folder / ("corpus.csv" if name == "scifact" else "corpus.json")).is_file():
            groups[name] = _LOADERS[name](folder)
    if not groups:
        raise FileNotFoundError(
            f"no corpus found under {data_dir} (expected hotpotqa/, musique/ or scifact/ folders); pass --data DIR"
        )
    articles = _interleave(groups)

    subjects: dict[str, Subject] = {}
    own_subject: dict[tuple[str, str], str] = {}
    for article in articles:
        if article.dataset in ("hotpotqa", "musique"):
            key = "title:" + article.title
            subjects.setdefault(key, _title_subject(article))
            own_subject[(article.dataset, article.key)] = key
    phrases = _phrases(subjects)
    longest = max((len(p) for p in phrases), default=1)

    # Abbreviations defined in SciFact abstracts: the first definition names the concept.
    for article in groups.get("scifact", []):
        for sentence in article.sentences:
            for m in _ABBREVIATION.finditer(sentence):
                abbr = m.group(1)
                if sum(c.isupper() for c in abbr) < 2 or ("term:" + abbr) in subjects:
                    continue
                before = tokens(sentence[: m.start()])
                width = min(max(sum(c.isupper() for c in abbr), 2), 8)
                long_form = " ".join(before[-width:])
                text = f"{long_form} ({abbr})" if long_form else abbr
                subjects["term:" + abbr] = Subject("term", "Concept", abbr, text, "scifact", article.uri)
    abbreviations = {s.name for k, s in subjects.items() if k.startswith("term:")}

    mentions: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for article in articles:
        per_sentence = []
        for sentence in article.sentences:
            words = tokens(sentence)
            if article.dataset == "scifact":
                found = [f"term:{w}" for w in dict.fromkeys(words) if w in abbreviations]
            else:
                found = _match(words, phrases, longest)
            per_sentence.append(tuple(found))
        mentions[(article.dataset, article.key)] = per_sentence

    # REFERENCES: a Wikipedia document to every document about a title it mentions; a SciFact
    # abstract to the earlier abstracts that share a rare abbreviation with it.
    docs_of_subject: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for article in articles:
        own = own_subject.get((article.dataset, article.key))
        if own is not None:
            docs_of_subject[own].append((article.dataset, article.key))
    term_docs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for article in articles:
        if article.dataset == "scifact":
            for key in dict.fromkeys(k for ks in mentions[(article.dataset, article.key)] for k in ks):
                term_docs[key].append((article.dataset, article.key))
    references: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for article in articles:
        me = (article.dataset, article.key)
        refs: dict[tuple[str, str], None] = {}
        for key in dict.fromkeys(k for ks in mentions[me] for k in ks):
            if key.startswith("title:"):
                targets = docs_of_subject.get(key, [])
            else:
                docs = term_docs.get(key, [])
                if not 2 <= len(docs) <= MAX_SHARED_ABBREVIATION_DOCS:
                    continue
                targets = docs[: docs.index(me)] if me in docs else []
            for target in targets:
                if target != me:
                    refs.setdefault(target, None)
        if refs:
            references[me] = list(refs)[:MAX_REFERENCES_PER_DOC]
    counts = {name: len(items) for name, items in groups.items()}
    return Corpus(articles, subjects, own_subject, mentions, references, counts)


# -- the graph stream -------------------------------------------------------------------------
Item = Entity | Relation


def _source(base: str, cycle: int) -> str:
    return base if cycle == 0 else f"{base}~{cycle}"


def _chunk_plan(article: Article, cycle: int) -> list[list[str]]:
    """Sentences of each chunk: cycle 0 keeps the text as written; later cycles shuffle it."""
    if article.dataset == "musique":
        paragraphs = [list(p) for p in article.paragraphs]
        if cycle:
            rng = random.Random(f"{SEED}:{cycle}:{article.dataset}:{article.key}")
            rng.shuffle(paragraphs)
            for p in paragraphs:
                rng.shuffle(p)
        return paragraphs
    sentences = article.sentences
    per = 3
    if cycle:
        rng = random.Random(f"{SEED}:{cycle}:{article.dataset}:{article.key}")
        sentences = list(sentences)
        rng.shuffle(sentences)
        per = rng.choice((2, 3, 4))
    return [sentences[i : i + per] for i in range(0, len(sentences), per)]


def _relation(rtype: str, src: str, dst: str, source: str, unit: str) -> Relation:
    return Relation(type=rtype, src=src, dst=dst, source=source, namespace=NAMESPACE, properties={"article": unit})


class GraphStream:
    """The benchmark graph as an ordered stream of entities and relations.

    ``items(max_entities)`` yields exactly `max_entities` entities (cycling the corpora as often
    as needed) and every relation whose endpoints are among them, each relation after both of its
    endpoints. The same arguments always give the same stream.
    """

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus

    def cycle_entities(self) -> int:
        """How many entities one pass over the corpora yields (cycle 0)."""
        return sum(1 for item in self._cycle(0) if isinstance(item, Entity))

    def items(self, max_entities: int) -> Iterator[Item]:
        emitted = 0
        cycle = 0
        while emitted < max_entities:
            produced = 0
            for item in self._cycle(cycle):
                if isinstance(item, Entity):
                    if emitted >= max_entities:
                        return
                    emitted += 1
                    produced += 1
                yield item
            if produced == 0:
                raise ValueError("the corpus yields no entities")
            cycle += 1

    def units(self, max_entities: int) -> Iterator[tuple[str, list[Item]]]:
        """The same stream grouped by article: (article key, its items), for record-wise ingest."""
        key: str | None = None
        group: list[Item] = []
        for item in self.items(max_entities):
            owner = str((item.properties or {}).get("article", ""))
            if key is not None and owner != key and group:
                yield key, group
                group = []
            key = owner
            group.append(item)
        if group and key is not None:
            yield key, group

    def _cycle(self, cycle: int) -> Iterator[Item]:
        corpus = self.corpus
        emitted: set[str] = set()
        waiting: dict[str, list[Relation]] = defaultdict(list)
        missing: dict[str, int] = {}
        doc_ids: dict[tuple[str, str], str] = {}
        subject_ids: dict[str, str] = {}

        def doc_id(dataset: str, key: str) -> str:
            return entity_id(_source(dataset, cycle), "doc", key)

        def subject_id(key: str) -> str:
            s = corpus.subjects[key]
            return entity_id(_source(s.source, cycle), s.kind, s.name)

        for article in corpus.articles:
            me = (article.dataset, article.key)
            source = _source(article.dataset, cycle)
            unit = f"{source}:{article.key}"
            prov = Provenance(uri=article.uri, version=f"cycle-{cycle}")
            plan = _chunk_plan(article, cycle)
            sentence_mentions = corpus.sentence_mentions(article)
            full_text = " ".join(s for chunk in plan for s in chunk)
            did = doc_ids.setdefault(me, doc_id(*me))
            entities: list[Entity] = [
                Entity(
                    id=did,
                    type="Document",
                    name=article.title,
                    text=f"{article.title}\n{full_text[:DOC_PREFIX_CHARS]}",
                    properties={
                        "article": unit,
                        "dataset": article.dataset,
                        "chunks": len(plan),
                        "chars": len(full_text),
                    },
                    source=source,
                    provenance=prov,
                    namespace=NAMESPACE,
                )
            ]
            relations: list[Relation] = []
            wanted_subjects: dict[str, None] = {}
            own = corpus.own_subject.get(me)
            if own is not None:
                wanted_subjects[own] = None
                relations.append(_relation("MENTIONS", did, subject_ids.setdefault(own, subject_id(own)), source, unit))
            previous: str | None = None
            for index, sentences in enumerate(plan):
                cid = entity_id(source, "chunk", f"{article.key}#{index}")
                entities.append(
                    Entity(
                        id=cid,
                        type="Chunk",
                        name=f"{article.title} #{index + 1}",
                        text=" ".join(sentences),
                        properties={"article": unit, "dataset": article.dataset, "index": index},
                        source=source,
                        provenance=prov,
                        namespace=NAMESPACE,
                    )
                )
                relations.append(_relation("CONTAINS", did, cid, source, unit))
                if previous is not None:
                    relations.append(_relation("NEXT", previous, cid, source, unit))
                previous = cid
                named = dict.fromkeys(k for s in sentences for k in sentence_mentions.get(s, ()))
                for key in named:
                    wanted_subjects.setdefault(key, None)
                    relations.append(
                        _relation("MENTIONS", cid, subject_ids.setdefault(key, subject_id(key)), source, unit)
                    )
            for target in corpus.references.get(me, []):
                relations.append(
                    _relation("REFERENCES", did, doc_ids.setdefault(target, doc_id(*target)), source, unit)
                )
            # Title entities and abbreviations are shared: the first article that names one
            # (in this cycle) brings it in.
            for key in wanted_subjects:
                sid = subject_ids[key]
                if sid in emitted or any(e.id == sid for e in entities):
                    continue
                s = corpus.subjects[key]
                entities.append(
                    Entity(
                        id=sid,
                        type=s.type,
                        name=s.name,
                        text=s.text,
                        properties={"article": unit, "kind": s.kind},
                        source=_source(s.source, cycle),
                        provenance=Provenance(uri=s.uri, version=f"cycle-{cycle}"),
                        namespace=NAMESPACE,
                    )
                )
            # Each relation is released right after the later of its endpoints: an endpoint of
            # this article releases it at its position, a later article's entity when it comes.
            position = {e.id: i for i, e in enumerate(entities)}
            release: dict[int, list[Relation]] = defaultdict(list)
            for r in relations:
                later = [x for x in dict.fromkeys((r.src, r.dst)) if x not in emitted and x not in position]
                if later:
                    missing[r.id] = len(later)
                    for x in later:
                        waiting[x].append(r)
                else:
                    release[max(position.get(r.src, 0), position.get(r.dst, 0))].append(r)
            for i, entity in enumerate(entities):
                emitted.add(entity.id)
                yield entity
                yield from release.get(i, ())
                for r in waiting.pop(entity.id, ()):
                    missing[r.id] -= 1
                    if missing[r.id] == 0:
                        del missing[r.id]
                        yield r


def batches(items: Iterable[Item], size: int = 1000) -> Iterator[tuple[list[Entity], list[Relation]]]:
    """Cut the stream into write batches of at most `size` rows (entities plus relations)."""
    entities: list[Entity] = []
    relations: list[Relation] = []
    for item in items:
        if isinstance(item, Entity):
            entities.append(item)
        else:
            relations.append(item)
        if len(entities) + len(relations) >= size:
            yield entities, relations
            entities, relations = [], []
    if entities or relations:
        yield entities, relations


# -- queries ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Query:
    dataset: str
    text: str


def load_queries(data_dir: Path) -> list[Query]:
    """Real questions: HotpotQA and MuSiQue questions and SciFact claims (each claim once),
    interleaved round-robin so any prefix mixes the three."""
    pools: list[list[Query]] = []
    for name in ("hotpotqa", "musique"):
        for path in sorted((data_dir / name).glob("questions_*.json")):
            items = json.loads(path.read_text(encoding="utf-8"))
            pools.append([Query(name, str(q["question"]).strip()) for q in items if str(q.get("question", "")).strip()])
    claims: dict[str, None] = {}
    for path in sorted((data_dir / "scifact").glob("claims_*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                text = (row.get("claim") or "").strip()
                if text:
                    claims.setdefault(text, None)
    pools.append([Query("scifact", c) for c in claims])
    out: list[Query] = []
    seen: set[str] = set()
    for i in range(max((len(p) for p in pools), default=0)):
        for pool in pools:
            if i < len(pool) and pool[i].text not in seen:
                seen.add(pool[i].text)
                out.append(pool[i])
    return out


def describe(corpus: Corpus) -> dict[str, object]:
    """Counts for the report: articles per corpus and the entity/relation mix of one cycle."""
    types: Counter[str] = Counter()
    rels: Counter[str] = Counter()
    for item in GraphStream(corpus)._cycle(0):
        if isinstance(item, Entity):
            types[item.type] += 1
        else:
            rels[item.type] += 1
    return {
        "articles": dict(corpus.counts),
        "cycle_entities": sum(types.values()),
        "cycle_relations": sum(rels.values()),
        "entity_types": dict(sorted(types.items())),
        "relation_types": dict(sorted(rels.items())),
    }


# -- the same graph for the memory-server tools ----------------------------------------------------
# Function words and question words: a keyword query made of one of them would match nearly
# every entity, which says nothing about search.
_STOPWORD_TEXT = """about above after again against also among and another any are around because been before
    being below between both but can could did does doing down during each either even ever every
    few first for from further had has have having her here hers herself him himself his how into
    its itself just last later least less many more most much must near neither never none nor not
    now off once one only other our ours out over own same several she should since some such than
    that the their theirs them themselves then there these they this those though through under
    until upon very was were what when where whether which while who whom whose why will with
    within without would yet you your also first second third known called named based used
    according"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True, slots=True)
class MemoryGraphData:
    """The benchmark graph in the memory server's shapes: `create_entities` and `create_relations`
    arguments (entities: name, entityType, observations; relations: from, to, relationType)."""

    entities: list[dict[str, Any]]
    relations: list[dict[str, str]]


def _unique_name(entity: Entity, used: set[str]) -> str:
    """The entity's name, made unique the way a person would: a Document and the Concept named by
    the same title become "Title (Document)" for the second one; a name still taken gets the id."""
    for name in (entity.name, f"{entity.name} ({entity.type})", f"{entity.name} ({entity.id})"):
        if name not in used:
            used.add(name)
            return name
    raise ValueError(f"entity id {entity.id!r} is not unique in the stream")


def memory_graph(stream: GraphStream, max_entities: int) -> MemoryGraphData:
    """The first `max_entities` entities of the stream and their relations, as memory-server
    entities (observations = the entity's text) and relations between their names."""
    names: dict[str, str] = {}
    used: set[str] = set()
    entities: list[dict[str, Any]] = []
    relations: list[dict[str, str]] = []
    for item in stream.items(max_entities):
        if isinstance(item, Entity):
            name = _unique_name(item, used)
            names[item.id] = name
            entities.append({"name": name, "entityType": item.type, "observations": [item.text]})
        else:
            relations.append({"from": names[item.src], "to": names[item.dst], "relationType": item.type})
    return MemoryGraphData(entities, relations)


def keyword_queries(queries: Iterable[Query], texts: Iterable[str]) -> list[tuple[Query, str]]:
    """One keyword per question, taken from the question: of its words of four letters or more
    that are not function words, the rarest one (fewest `texts` containing it, at least one; the
    longer word on a tie). Questions none of whose words occur in the texts are left out."""
    df: Counter[str] = Counter()
    for text in texts:
        df.update({w.lower() for w in tokens(text)})
    out: list[tuple[Query, str]] = []
    for q in queries:
        words = [w.lower() for w in tokens(q.text)]
        candidates = {w for w in words if len(w) >= 4 and w.isalpha() and w not in _STOPWORDS and df[w] > 0}
        if candidates:
            out.append((q, min(candidates, key=lambda w: (df[w], -len(w), w))))
    return out
