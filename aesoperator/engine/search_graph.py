"""The search pipeline's graph stages: the walk channel over items and the entities they mention
(`walk_candidates`), graph expansion over the seeds' neighbourhood (`expand_candidates`) and
conversation windows (`window_candidates`). Their maths lives in `entity_walk`, `graph_expansion`
(through `retrieval`) and `windows`; these functions read what it needs from the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from aesoperator.engine import retrieval
from aesoperator.engine.bridges import Bridge, BridgePass, bridge_scores, pick_bridges, residual_query
from aesoperator.engine.entity_walk import WALK_RELATIONS, WalkResult, walk_items
from aesoperator.engine.graph_expansion import Neighbourhood
from aesoperator.engine.retrieval import Candidate
from aesoperator.engine.search_request import (
    BRIDGE_CHANNEL,
    WALK_CHANNEL,
    ChannelHits,
    SearchRequest,
    SearchSources,
    StageTimer,
    keep_candidates,
)
from aesoperator.engine.search_settings import SearchSettings
from aesoperator.engine.stores.base import Links, Subgraph
from aesoperator.engine.windows import WINDOW_RELATION, widen
from aesoperator.graph_schema.knowledge import KNOWLEDGE_ID_PREFIX
from aesoperator.graph_schema.models import Entity, Relation

if TYPE_CHECKING:
    from aesoperator.engine.keyword_index import KeywordIndex
    from aesoperator.engine.vectors import VectorIndex


def query_relevance(
    index: VectorIndex, query_vec: np.ndarray, vector_hits: Sequence[tuple[str, float]], entity_ids: Sequence[str]
) -> dict[str, float]:
    """Cosine of each entity to the query, scaled to [0, 1] between the weakest and the strongest
    vector hit; vectors come from the FAISS index (memory, no store round trip).

    Args:
        index: the vector index, synced.
        query_vec: the query's embedding.
        vector_hits: the vector channel's (id, cosine) list.
        entity_ids: the entities to score.

    Returns:
        Entity id -> relevance in [0, 1] (ids without a vector are left out).
    """
    cosines = dict(vector_hits)
    missing = [eid for eid in entity_ids if eid not in cosines]
    if missing:
        found = index.get_vectors(missing)
        if found:
            ids = list(found)
            matrix = np.vstack([found[i] for i in ids]).astype(np.float32)
            sims = matrix @ np.asarray(query_vec, dtype=np.float32).ravel()
            cosines.update(zip(ids, sims.tolist(), strict=True))
    if not vector_hits:
        return retrieval.query_relevance(cosines, 0.0, 1.0)
    scores = [s for _, s in vector_hits]
    return retrieval.query_relevance(cosines, min(scores), max(scores))


def walk_candidates(
    sources: SearchSources,
    candidates: list[Candidate],
    hits: ChannelHits,
    request: SearchRequest,
    settings: SearchSettings,
    timer: StageTimer,
) -> WalkResult | None:
    """Stage 3b: the walk channel, personalised PageRank over items and the entities they mention
    (`entity_walk`), from the first-stage hits and the entities the query names.

    Args:
        sources: the store (the seeds' neighbourhood).
        candidates: the first stage's loaded candidates, best first.
        hits: the channel lists; `hits.linked` holds the entities the query names.
        request: the search (untyped searches only: typed ones ask for entities themselves).
        settings: walk seeds, damping and the neighbourhood's size.
        timer: receives `walk`.

    Returns:
        The walk's items and reasons, or None when the channel is off or has nothing to walk.
    """
    if WALK_CHANNEL not in request.channels or settings.walk_weight <= 0 or request.type_filter is not None:
        return None
    if request.hops <= 0:  # no graph asked for
        return None
    seeds = {c.id: c.score for c in candidates[: settings.walk_seeds]}
    if not seeds and not hits.linked:
        return None
    with timer.stage("walk"):
        links = sources.store.neighbor_links(
            [*seeds, *hits.linked],
            depth=2,
            relation_types=WALK_RELATIONS,
            as_of=request.as_of,
            namespaces=request.namespaces,
            limit=settings.walk_limit,
        )
        return walk_items(
            seeds, hits.linked, links, lambda node: not node.startswith(KNOWLEDGE_ID_PREFIX), alpha=settings.walk_alpha
        )


def walk_reasons(walk: WalkResult, candidates: list[Candidate], entities: dict[str, Entity]) -> None:
    """Say on each candidate the walk brought in which entity it came through ("found via ...")."""
    wanted = {c.id for c in candidates if c.id in walk.bridges}
    if not wanted:
        return
    named = {x for i in wanted for x in walk.bridges[i] if x is not None}
    names = {e.id: e.name for e in entities.values() if e.id in named}
    missing = [x for x in named if x not in names]
    names.update((e.id, e.name) for e in (entities.get(x) for x in missing) if e is not None)
    for cand in candidates:
        if cand.id in wanted:
            bridge, seed = walk.bridges[cand.id]
            where = "the query" if seed is None else f"'{names.get(seed, seed)}'"
            cand.reasons.append(f"found via '{names.get(bridge, bridge)}', named in {where}")


def bridge_candidates(
    sources: SearchSources,
    candidates: list[Candidate],
    hits: ChannelHits,
    request: SearchRequest,
    settings: SearchSettings,
    timer: StageTimer,
    items: dict[str, Entity],
) -> tuple[list[tuple[str, float]], dict[str, Bridge]] | None:
    """Stage 4b: multi-step retrieval (`bridges`): the keyword index asked again about each entity
    the best hits mention and the query does not, with the words of the query its hit lacks.

    Args:
        sources: the store (the hits' mentions) and the keyword index.
        candidates: the first stage's loaded candidates, best first.
        hits: the channel lists (for the index position).
        request: the search (with a graph depth of at least one; its types filter the second passes).
        settings: `bridge_weight` (0: off), `bridge_hits`, `bridge_entities`, `bridge_query`,
            `bridge_depth`.
        timer: receives `bridge`.
        items: the loaded candidates' entities by id (the texts of the hits naming bridges).

    Returns:
        The bridge channel's (item, score) list and the bridge behind each item, or None when off.
    """
    off = BRIDGE_CHANNEL not in request.channels or settings.bridge_weight <= 0 or request.hops <= 0
    if off or sources.keyword_index is None or not candidates:
        return None
    top = candidates[: settings.bridge_hits]
    top_ids = {c.id for c in top}
    with timer.stage("bridge"):
        links = sources.store.neighbor_links(
            list(top_ids), depth=1, relation_types=["MENTIONS"], as_of=request.as_of, namespaces=request.namespaces
        )
        mentions: dict[str, list[str]] = {}
        for a, b, _ in links.edges:
            for item, other in ((a, b), (b, a)):
                if item in top_ids and other.startswith(KNOWLEDGE_ID_PREFIX):
                    mentions.setdefault(item, []).append(other)
        named = sorted({e for ids in mentions.values() for e in ids})
        entities = {e.id: e for e in sources.get_entities(named, request.namespaces)}
        chosen = pick_bridges(
            request.query, [(c.id, c.score) for c in top], mentions, entities, settings.bridge_entities
        )
        if not chosen:
            return None
        keywords = sources.keyword_index(hits.store_seq)
        passes = [_second_pass(keywords, bridge, request, settings, items) for bridge in chosen]
        return bridge_scores(passes)


def _second_pass(
    keywords: KeywordIndex, bridge: Bridge, request: SearchRequest, settings: SearchSettings, items: dict[str, Entity]
) -> BridgePass:
    """Ask the keyword index about one bridge (`settings.bridge_query`, see `bridges`)."""

    def ask(text: str, k: int) -> list[tuple[str, float]]:
        return keywords.search(
            text,
            k,
            namespaces=request.namespaces,
            types=request.types,
            include_extracted=request.type_filter is not None,
        )

    hit = items.get(bridge.hit_id)
    if settings.bridge_query == "query" or hit is None:
        return BridgePass(bridge, ask(f"{request.query} {bridge.name}", request.n_candidates))
    residual = f"{bridge.name} {residual_query(request.query, hit.text)}"
    return BridgePass(
        bridge,
        ask(residual, settings.bridge_depth),
        scale=keywords.score_ceiling(residual),
        weight=keywords.specificity(bridge.name),
    )


def bridge_reasons(via: dict[str, Bridge], candidates: list[Candidate], entities: dict[str, Entity]) -> None:
    """Say on each candidate the bridge channel ranked which entity of which hit found it."""
    for cand in candidates:
        bridge = via.get(cand.id)
        if bridge is not None and bridge.hit_id != cand.id:
            hit = entities.get(bridge.hit_id)
            cand.reasons.append(f"found via '{bridge.name}', named in '{hit.name if hit else bridge.hit_id}'")


def expand_candidates(
    sources: SearchSources,
    candidates: list[Candidate],
    entities: dict[str, Entity],
    hits: ChannelHits,
    request: SearchRequest,
    settings: SearchSettings,
    timer: StageTimer,
) -> tuple[list[Candidate], Neighbourhood | None]:
    """Stage 4: spread the candidates' scores over their neighbourhood (`request.hops` deep) and
    bring in the neighbours that gain most. Does nothing at zero hops or without candidates.

    On a local store the neighbourhood is walked by its shape (`neighbor_links`): of its records,
    only the entities that become candidates are read, and its relations only when they join two
    hits (`relations_among`, when the context is packed). Where every read is a round trip
    (`remote_reads`), one read brings the records with the shape (`neighbors`).

    Args:
        sources: the store (neighbours) and the vector index (query-aware weighting).
        candidates: loaded candidates, best first.
        entities: known entities by id; the new candidates' entities are added to it.
        hits: the channel lists and query vector.
        request: the search.
        settings: hop decay, graph weight and query-aware weighting.
        timer: receives `expand` and, when query-aware weighting is on, `relevance`.

    Returns:
        The candidates after expansion (filtered like `load_candidates`) and the neighbourhood
        walked (None when there was none).
    """
    k = request.k
    if request.hops <= 0 or not candidates:
        return candidates, None
    with timer.stage("expand"):
        seeds = candidates[: max(k, 10)]
        walk = sources.store.neighbors if sources.store.remote_reads else sources.store.neighbor_links
        walked = walk(
            [c.id for c in seeds],
            depth=request.hops,
            as_of=request.as_of,
            namespaces=request.namespaces,
            limit=max(200, 20 * k),
            # Untyped searches walk the items' own links: through extracted entities, a passage's
            # fifteen names would fill the neighbourhood's limit at the first hop.
            skip_prefixes=() if request.type_filter is not None else (KNOWLEDGE_ID_PREFIX,),
        )
        if isinstance(walked, Subgraph):
            entities.update(walked.entities)
        names = {eid: e.name for eid, e in entities.items()}
        relevance = None
        if settings.expansion_relevance_weight > 0 and hits.query_vec is not None:
            with timer.stage("relevance"):
                relevance = query_relevance(
                    sources.vector_index(hits.store_seq),
                    hits.query_vec,
                    hits.ranked.get("vector", []),
                    list(dict.fromkeys([*entities, *walked.hops])),
                )
        expanded = retrieval.expand_graph(
            candidates,
            walked,
            as_of=request.as_of,
            names=names,
            max_new=max(20, 2 * k),
            max_seeds=len(seeds),
            hop_decay=settings.hop_decay,
            weight=settings.graph_weight,
            relevance=relevance,
            relevance_weight=settings.expansion_relevance_weight,
        )
        fresh = [c.id for c in expanded if c.id not in entities]
        if fresh:
            entities.update({e.id: e for e in sources.get_entities(fresh, request.namespaces)})
        return keep_candidates(expanded, entities, request), walked


def relations_among(sources: SearchSources, walked: Neighbourhood | None, ids: Sequence[str]) -> list[Relation]:
    """The relations the expansion walked whose both ends are in `ids` (the hits, for the
    context's facts), in the order they were walked: read from the store when the walk read
    only the neighbourhood's shape."""
    if walked is None or not ids:
        return []
    wanted = set(ids)
    if isinstance(walked, Subgraph):
        return [r for r in walked.relations if r.src in wanted and r.dst in wanted]
    joining = Links()
    for edge, rel_id in zip(walked.edges, walked.relation_ids, strict=True):
        if edge[0] in wanted and edge[1] in wanted:
            joining.edges.append(edge)
            joining.relation_ids.append(rel_id)
    return sources.store.relations_on(joining) if joining.edges else []


def window_candidates(
    sources: SearchSources,
    candidates: list[Candidate],
    entities: dict[str, Entity],
    request: SearchRequest,
    settings: SearchSettings,
    timer: StageTimer,
) -> list[Candidate]:
    """Stage 4b: conversation windows (`windows.widen`): a turn gains a share of its best
    neighbour's score, and the neighbours of the best candidates come in.

    Args:
        sources: the store (NEXT neighbours, new candidates' entities).
        candidates: candidates after expansion, best first.
        entities: known entities by id; new candidates' entities are added.
        request: the search.
        settings: `window_weight` (0: off).
        timer: receives `window`.

    Returns:
        The candidates, rescored and filtered like `load_candidates`.
    """
    if settings.window_weight <= 0 or not candidates:
        return candidates
    with timer.stage("window"):
        pool = candidates[: max(3 * request.k, 30)]
        links = sources.store.neighbor_links(
            [c.id for c in pool],
            depth=settings.window_span,
            relation_types=[WINDOW_RELATION],
            as_of=request.as_of,
            namespaces=request.namespaces,
            limit=(2 * settings.window_span + 1) * len(pool),
        )
        neighbours: dict[str, list[str]] = {}
        for a, b, _ in links.edges:
            neighbours.setdefault(a, []).append(b)
            neighbours.setdefault(b, []).append(a)
        names = {c.id: entities[c.id].name for c in pool if c.id in entities}
        widened = widen(pool, neighbours, settings.window_weight, names, settings.window_span)
        widened += candidates[len(pool) :]
        fresh = [c.id for c in widened if c.id not in entities]
        if fresh:
            entities.update({e.id: e for e in sources.get_entities(fresh, request.namespaces)})
        return keep_candidates(widened, entities, request)


__all__ = [
    "bridge_candidates",
    "bridge_reasons",
    "expand_candidates",
    "query_relevance",
    "relations_among",
    "walk_candidates",
    "walk_reasons",
    "window_candidates",
]
