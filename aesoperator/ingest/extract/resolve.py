"""Entity resolution: a cascade of cheap, explainable rules, each merge a recorded decision.

Within one namespace at a time (never across), over the entities that stand for people,
organisations, places, systems, projects, concepts and events — whether a source brought them
(a git author, a GitHub user, a memory-server entity) or extraction found them in text:

1. `exact-key`: the same e-mail, login or URL (a GitHub no-reply e-mail gives its login; a
   github.com profile URL gives its login);
2. `name-type`: the same normalised name and type;
3. `acronym`: an acronym and its expansion (defined in a text, or the initials of a name);
4. `alias`: a name another entity lists as an alias; a git author whose name is another's login;
5. `fuzzy`: near-identical names of one type (rapidfuzz token-sort ratio);
6. `embedding`: names whose sentence embeddings are almost the same, for pairs the fuzzy rule
   found close but not close enough.

A merge is a SAME_AS relation carrying the rule, its score and the evidence; `unmerge` expires it
and records NOT_SAME_AS, which the resolver respects from then on.

After a `remember` only a few entities are new, and everything else was resolved before: then the
new ones are compared with candidates fetched by key (exact and keyword name matches, and the
SAME_AS clusters those belong to) instead of the whole namespace. Limits of that incremental run,
which a full scan (every ingest) does not have: an acronym is matched to its expansion only when a
text defined it or the expansion is the new one; a new entity with an e-mail, login or URL key
falls back to the full scan, since the store has no lookup by property.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rapidfuzz import fuzz

from aesoperator.engine.stores.base import GraphStore
from aesoperator.graph_schema.ids import relation_id
from aesoperator.graph_schema.models import Entity, Relation, to_iso, utcnow
from aesoperator.graph_schema.vocabulary import canonical_entity_type, type_spellings
from aesoperator.ingest.extract.keys import email_key, initials, login_from_email, login_key, normalize_name, url_key

if TYPE_CHECKING:
    from aesoperator.engine.embeddings import TextEmbedder

RESOLUTION_SOURCE = "resolution"
RESOLVABLE_TYPES: frozenset[str] = frozenset(
    {"Person", "Organization", "Place", "Product", "Project", "Concept", "Event"}
)
FUZZY_MIN = 92.0
EMBED_FUZZY_FLOOR = 80.0
EMBED_MIN = 0.92
MIN_FUZZY_CHARS = 6
INCREMENTAL_MAX = 32  # more new entities than this (an ingest) and one full scan is cheaper
INCREMENTAL_K = 50  # keyword candidates per new name: the fuzzy and embedding rules' pool
_GITHUB_PROFILE = re.compile(r"^https?://github\.com/([A-Za-z0-9-]{1,39})/?$")
_ACRONYM = re.compile(r"^[A-Z][A-Z0-9&]{1,7}$")
_STOP = frozenset(["of", "the", "and", "for", "in", "on", "to", "with", "a", "an", "by", "at", "from"])


@dataclass(frozen=True, slots=True)
class MergeDecision:
    a: str
    b: str
    rule: str
    score: float
    evidence: str


def exact_keys(entity: Entity) -> set[str]:
    """E-mail, login and URL keys an entity carries (in its properties or as its extraction key)."""
    props = entity.properties
    keys: set[str] = set()
    key = props.get("key")
    if isinstance(key, str) and key.split(":", 1)[0] in {"email", "login", "url"}:
        keys.add(key)
    email = props.get("email")
    if isinstance(email, str) and "@" in email:
        keys.add(email_key(email))
        login = login_from_email(email)
        if login:
            keys.add(login_key(login))
    login_value = props.get("login")
    if isinstance(login_value, str) and login_value:
        keys.add(login_key(login_value))
    url = props.get("url")
    if isinstance(url, str) and url.startswith("http"):
        keys.add(url_key(url))
        match = _GITHUB_PROFILE.match(url)
        if match:
            keys.add(login_key(match.group(1)))
    for k in list(keys):
        if k.startswith("url:"):
            match = _GITHUB_PROFILE.match(k[4:])
            if match:
                keys.add(login_key(match.group(1)))
    return keys


def names_of(entity: Entity) -> set[str]:
    names = {normalize_name(entity.name)}
    aliases = entity.properties.get("aliases")
    if isinstance(aliases, list):
        names.update(normalize_name(a) for a in aliases if isinstance(a, str))
    return {n for n in names if len(n) >= 2}


def _content_initials(name: str) -> str:
    return initials(" ".join(w for w in name.split() if w.lower() not in _STOP))


_DIGITS = re.compile(r"\d+")
_QUALIFIER = re.compile(r"^(.*\S)\s*\(([^()]+)\)$")


def qualifier(name: str) -> tuple[str, str] | None:
    """'Mercury (planet)' -> ('mercury', 'planet'): a name that says which of several it is."""
    match = _QUALIFIER.match(name.strip())
    if match is None:
        return None
    return normalize_name(match.group(1)), normalize_name(match.group(2))


def _conflicting(left: set[str], right: set[str], qualified: dict[str, tuple[str, str] | None]) -> bool:
    """True when the two clusters hold the same name with different qualifiers ('Mercury
    (planet)' and 'Mercury (element)'): whatever else they share, they are different things."""
    seen: dict[str, str] = {}
    for member in left:
        q = qualified.get(member)
        if q is not None:
            seen[q[0]] = q[1]
    for member in right:
        q = qualified.get(member)
        if q is not None and seen.get(q[0], q[1]) != q[1]:
            return True
    return False


def login_patterns(name: str) -> set[str]:
    """Logins people derive from 'First Last': firstlast, flast, firstl, lastf, first (with the
    separators removed); empty unless the name has two or more words of letters."""
    words = [w for w in re.split(r"[\s.]+", normalize_name(name)) if w.isalpha()]
    if len(words) < 2:
        return set()
    first, last = words[0], words[-1]
    return {first + last, first[0] + last, first + last[0], last + first[0], last + first}


class _Clusters:
    """Union-find that also keeps each cluster's members."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self._members: dict[str, set[str]] = {}

    def find(self, x: str) -> str:
        if x not in self.parent:
            self.parent[x] = x
            self._members[x] = {x}
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            keep, gone = min(ra, rb), max(ra, rb)
            self.parent[gone] = keep
            self._members[keep] |= self._members.pop(gone)

    def members(self, x: str) -> set[str]:
        return self._members[self.find(x)]


def candidate_pairs(
    entities: Sequence[Entity], acronym_links: Iterable[tuple[str, str, str]] = ()
) -> list[MergeDecision]:
    """Every pair the cascade's rules (but the embedding rule) propose, in cascade order."""
    types = {e.id: canonical_entity_type(e.type) for e in entities}
    by_id = {e.id: e for e in entities}
    out: list[MergeDecision] = []

    def same_type(a: str, b: str) -> bool:
        return types[a] == types[b]

    def loose_type(a: str, b: str) -> bool:
        return types[a] == types[b] or "Concept" in (types[a], types[b])

    # 1. exact keys
    by_key: dict[str, list[str]] = {}
    for e in entities:
        for k in exact_keys(e):
            by_key.setdefault(k, []).append(e.id)
    for k, ids in sorted(by_key.items()):
        ids = sorted(ids)
        for other in ids[1:]:
            if same_type(ids[0], other):
                out.append(MergeDecision(ids[0], other, "exact-key", 1.0, f"both carry {k}"))
    # 2. normalised name + type
    by_name: dict[tuple[str, str], list[str]] = {}
    for e in entities:
        by_name.setdefault((types[e.id], normalize_name(e.name)), []).append(e.id)
    for (t, n), ids in sorted(by_name.items()):
        ids = sorted(ids)
        if len(n) >= 2:
            out.extend(MergeDecision(ids[0], o, "name-type", 0.95, f"both are {t} named {n!r}") for o in ids[1:])
    # 3. acronym <-> expansion: defined in a text, or by initials
    for a, b, evidence in acronym_links:
        if a in by_id and b in by_id and loose_type(a, b):
            out.append(MergeDecision(min(a, b), max(a, b), "acronym", 0.9, evidence))
    acronyms = [e for e in entities if _ACRONYM.match(e.name.strip())]
    long_by_initials: dict[str, list[str]] = {}
    for e in entities:
        name = normalize_name(e.name)
        if len(name.split()) >= 2:
            long_by_initials.setdefault(_content_initials(name), []).append(e.id)
    for e in acronyms:
        for other in sorted(long_by_initials.get(e.name.strip().lower(), [])):
            if loose_type(e.id, other):
                out.append(
                    MergeDecision(
                        min(e.id, other),
                        max(e.id, other),
                        "acronym",
                        0.8,
                        f"{e.name!r} is the initials of {by_id[other].name!r}",
                    )
                )
    # 4. aliases, and a person's name that is another person's login
    names: dict[str, list[str]] = {}
    for e in entities:
        names.setdefault(normalize_name(e.name), []).append(e.id)
    for e in entities:
        for alias in sorted(names_of(e) - {normalize_name(e.name)}):
            for other in names.get(alias, []):
                if other != e.id and loose_type(e.id, other):
                    out.append(
                        MergeDecision(
                            min(e.id, other), max(e.id, other), "alias", 0.9, f"{alias!r} is an alias of {e.name!r}"
                        )
                    )
    logins = {k[len("login:") :]: ids for k, ids in by_key.items() if k.startswith("login:")}
    for e in entities:
        compact = normalize_name(e.name).replace(" ", "")
        if types[e.id] == "Person" and compact in logins and not exact_keys(e) & {login_key(compact)}:
            for other in sorted(logins[compact]):
                if other != e.id and same_type(e.id, other):
                    out.append(
                        MergeDecision(
                            min(e.id, other),
                            max(e.id, other),
                            "alias",
                            0.85,
                            f"the name {e.name!r} is the login {compact!r}",
                        )
                    )
    # ... and a login that follows a naming convention of a person's full name (mkowalski,
    # priya-n, tomas.reyes), when the namespace has exactly one such person
    by_pattern: dict[str, list[str]] = {}
    for e in entities:
        if types[e.id] == "Person":
            for pattern in login_patterns(e.name):
                by_pattern.setdefault(pattern, []).append(e.id)
    for login, ids in sorted(logins.items()):
        compact = re.sub(r"[-_.]", "", login)
        people = sorted(set(by_pattern.get(compact, [])) - set(ids))
        if len(people) == 1:
            for other in sorted(ids):
                if same_type(other, people[0]):
                    out.append(
                        MergeDecision(
                            min(other, people[0]),
                            max(other, people[0]),
                            "alias",
                            0.8,
                            f"the login {login!r} follows a convention for the name {by_id[people[0]].name!r}",
                        )
                    )
    # 5. fuzzy names within a type, blocked by shared words
    blocks: dict[tuple[str, str], list[str]] = {}
    for e in entities:
        for word in set(normalize_name(e.name).split()):
            if len(word) >= 4:
                blocks.setdefault((types[e.id], word), []).append(e.id)
    seen: set[tuple[str, str]] = set()
    for ids in blocks.values():
        if len(ids) > 200:  # a word shared by hundreds of names says nothing
            continue
        ids = sorted(ids)
        for i, a in enumerate(ids):
            na = normalize_name(by_id[a].name)
            for b in ids[i + 1 :]:
                nb = normalize_name(by_id[b].name)
                if (a, b) in seen or na == nb or min(len(na), len(nb)) < MIN_FUZZY_CHARS:
                    continue
                if _DIGITS.findall(na) != _DIGITS.findall(nb):
                    continue  # 'Heinkel HD 23' and 'Heinkel HD 36', 2019 and 2020: numbers tell things apart
                seen.add((a, b))
                score = fuzz.token_sort_ratio(na, nb)
                if score >= FUZZY_MIN:
                    out.append(
                        MergeDecision(a, b, "fuzzy", round(score / 100, 3), f"{na!r} ~ {nb!r} ({score:.0f}/100)")
                    )
                elif score >= EMBED_FUZZY_FLOOR:
                    out.append(MergeDecision(a, b, "embedding?", round(score / 100, 3), f"{na!r} ~ {nb!r}"))
    return out


class EntityResolver:
    """Runs the cascade over the resolvable entities of a namespace and records its merges."""

    def __init__(self, store: GraphStore, embedder: TextEmbedder | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}
        self._acronyms: dict[str, list[tuple[str, str, str]]] = {}

    def note_acronyms(self, relations: Sequence[Relation]) -> None:
        """ACRONYM_OF relations extraction just found: the acronym rule uses them at the next run."""
        for r in relations:
            if r.type == "ACRONYM_OF":
                evidence = f"defined in {r.properties.get('item', '?')}: {r.properties.get('evidence', '')!r}"
                self._acronyms.setdefault(r.namespace, []).append((r.src, r.dst, evidence))

    def _entities(self, namespace: str) -> list[Entity]:
        out: list[Entity] = []
        # selected by type in the store: a namespace of many episodes is not read to find its people
        for batch in self.store.iter_entities(namespaces=[namespace], types=type_spellings(RESOLVABLE_TYPES)):
            out.extend(e for e in batch if canonical_entity_type(e.type) in RESOLVABLE_TYPES)
        return out

    def _incremental(
        self, namespace: str, new_ids: Sequence[str], links: Sequence[tuple[str, str, str]]
    ) -> list[Entity] | None:
        """The new entities and the stored ones they could merge with, or None when a full scan
        is needed (too many new ones, or one with an exact key no store lookup can find)."""
        ids = set(new_ids) | {x for a, b, _ in links for x in (a, b)}
        if not ids:
            return []  # nothing new here
        if len(ids) > INCREMENTAL_MAX:
            return None
        types = type_spellings(RESOLVABLE_TYPES)
        new = [
            e
            for e in self.store.get_entities(sorted(ids), [namespace])
            if canonical_entity_type(e.type) in RESOLVABLE_TYPES
        ]
        if any(exact_keys(e) for e in new):
            return None
        names: set[str] = set()
        for e in new:
            own = normalize_name(e.name)
            names |= names_of(e) | {e.name.strip(), own.replace(" ", "")} | login_patterns(e.name)
            if len(own.split()) >= 2:
                names.add(_content_initials(own))  # an acronym already stored for this expansion
        found = {i for hits in self.store.name_lookup(sorted(names), [namespace], types).values() for i in hits}
        for e in new:  # near names (fuzzy, embedding) and names listing this one as an alias
            found.update(i for i, _ in self.store.keyword_search(e.name, INCREMENTAL_K, [namespace], types))
        # whole SAME_AS clusters, so refusals and qualifier conflicts see every member as a full scan would
        found |= set(
            self.store.neighbor_links(sorted(found), depth=3, relation_types=["SAME_AS"], namespaces=[namespace]).hops
        )
        found -= {e.id for e in new}
        old = [
            e
            for e in self.store.get_entities(sorted(found), [namespace])
            if canonical_entity_type(e.type) in RESOLVABLE_TYPES
        ]
        return new + old

    def decide(self, namespace: str, new_ids: Sequence[str] | None = None) -> list[MergeDecision]:
        """The merges the cascade adds in `namespace` (nothing is written). With `new_ids` (the
        entities created since the namespace was last resolved), only pairs with a new entity are
        proposed, among candidates fetched by key, unless there are too many to make that cheaper."""
        acronym_links = self._acronyms.pop(namespace, [])
        subset = self._incremental(namespace, new_ids, acronym_links) if new_ids is not None else None
        entities = self._entities(namespace) if subset is None else subset
        if len(entities) < 2:
            return []
        proposed = candidate_pairs(entities, acronym_links)
        if subset is not None:  # pairs of old entities were decided when they were new
            fresh = set(new_ids or ()) | {x for a, b, _ in acronym_links for x in (a, b)}
            proposed = [d for d in proposed if d.a in fresh or d.b in fresh]
        # Decisions already taken about these pairs (merges, and refusals after an unmerge): their
        # ids follow from the pair, so they are read directly rather than by a graph traversal.
        pair_ids = {
            relation_id(kind, min(d.a, d.b), max(d.a, d.b)) for d in proposed for kind in ("SAME_AS", "NOT_SAME_AS")
        }
        known = self.store.get_relations(sorted(pair_ids)) if pair_ids else []
        clusters = _Clusters()
        blocked: set[frozenset[str]] = set()
        for r in known:
            if r.type == "SAME_AS" and r.is_live():
                clusters.union(r.src, r.dst)
            elif r.type == "NOT_SAME_AS" and r.is_live():
                blocked.add(frozenset((r.src, r.dst)))
        by_id = {e.id: e for e in entities}
        qualified = {e.id: qualifier(e.name) for e in entities}
        decisions: list[MergeDecision] = []
        self._vectors = self._name_vectors({n for d in proposed if d.rule == "embedding?" for n in (d.a, d.b)}, by_id)
        for d in proposed:
            if d.rule == "embedding?":
                checked = self._embedding_check(d, by_id)
                if checked is None:
                    continue
                d = checked
            if clusters.find(d.a) == clusters.find(d.b):
                continue
            left, right = clusters.members(d.a), clusters.members(d.b)
            if any(frozenset((x, y)) in blocked for x in left for y in right):
                continue
            if _conflicting(left, right, qualified):
                continue
            clusters.union(d.a, d.b)
            decisions.append(d)
        return decisions

    def _name_vectors(self, ids: set[str], by_id: dict[str, Entity]) -> dict[str, np.ndarray]:
        """One batched embedding of the names the embedding rule will compare."""
        if self.embedder is None or not ids:
            return {}
        ordered = sorted(ids)
        matrix = self.embedder.embed([by_id[i].name for i in ordered])
        return {i: matrix[row] for row, i in enumerate(ordered)}

    def _embedding_check(self, d: MergeDecision, by_id: dict[str, Entity]) -> MergeDecision | None:
        if d.a not in self._vectors or d.b not in self._vectors:
            return None
        cosine = float(self._vectors[d.a] @ self._vectors[d.b])
        if cosine < EMBED_MIN:
            return None
        return MergeDecision(
            d.a, d.b, "embedding", round(cosine, 3), f"{d.evidence}; name embeddings cosine {cosine:.3f}"
        )

    def resolve(self, namespaces: Sequence[str], new_ids: Sequence[str] | None = None) -> int:
        """Resolve each namespace; `new_ids`: the entities created since they were last resolved
        (None: unknown, every entity is compared with every other)."""
        written = 0
        for ns in sorted(set(namespaces)):
            decisions = self.decide(ns, new_ids)
            if not decisions:
                continue
            at = to_iso(utcnow())
            relations = [
                Relation(
                    type="SAME_AS",
                    src=d.a,
                    dst=d.b,
                    properties={"rule": d.rule, "score": d.score, "evidence": d.evidence, "decided_at": at},
                    source=RESOLUTION_SOURCE,
                    namespace=ns,
                )
                for d in decisions
            ]
            for start in range(0, len(relations), 1000):
                self.store.upsert(relations=relations[start : start + 1000])
            written += len(relations)
        return written
