"""What each soak client calls: a weighted mix of the engine's tools and the memory-server tools.

Every client keeps its own state so that each call is one a correct client would make and should
succeed: it asks `get_entities` and `neighbors` about ids an earlier `search` returned, and it
creates, annotates, links and opens memory-graph entities of its own (names prefixed by its id),
so no call depends on another client's timing. The memory graph stays bounded (a fixed pool of
names per client, at most `MAX_OBSERVATIONS` observations each, the oldest deleted first); the
agent memories (`remember`) grow, as they do in use.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Relative weights of the calls a client makes.
WEIGHTS: dict[str, int] = {
    "search": 24,
    "recall": 12,
    "remember": 12,
    "get_entities": 9,
    "neighbors": 9,
    "create_entities": 4,
    "add_observations": 9,
    "create_relations": 4,
    "search_nodes": 8,
    "open_nodes": 7,
    "read_graph": 2,
}
NAMES_PER_CLIENT = 40
MAX_OBSERVATIONS = 6
ID_POOL = 200
WORDS = [
    "ledger",
    "crate",
    "shipment",
    "audit",
    "invoice",
    "supplier",
    "warehouse",
    "dock",
    "pallet",
    "route",
    "forecast",
    "budget",
    "contract",
    "review",
    "release",
    "schedule",
    "incident",
    "outage",
    "backup",
    "index",
    "query",
    "latency",
    "customer",
]


def agent_of(client: int) -> str:
    return f"soak-{client:02d}"


def scopes_of(client: int, memory_namespace: str) -> list[str]:
    """A client's token: read the shared graph, read and write its own agent memory and the memory graph."""
    agent = f"agent:{agent_of(client)}"
    return [
        "read:default",
        f"read:{agent}",
        f"write:{agent}",
        f"read:{memory_namespace}",
        f"write:{memory_namespace}",
        "tool:*",
    ]


@dataclass
class ClientWorkload:
    """The next call of one client, and what it learns from the answers."""

    client: int
    queries: list[str]
    rng: random.Random = field(init=False)
    seen_ids: deque[str] = field(default_factory=lambda: deque(maxlen=ID_POOL))
    created: list[str] = field(default_factory=list)
    observations: dict[str, deque[str]] = field(default_factory=dict)
    counter: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(1000 + self.client)

    @property
    def agent(self) -> str:
        return agent_of(self.client)

    def _name(self, n: int) -> str:
        return f"{self.agent} item {n:03d}"

    def _phrase(self, words: int = 3) -> str:
        return " ".join(self.rng.sample(WORDS, words))

    def next_call(self) -> tuple[str, dict[str, Any]]:
        self.counter += 1
        tool = self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        if tool in ("get_entities", "neighbors") and not self.seen_ids:
            tool = "search"
        if tool in ("add_observations", "create_relations", "open_nodes") and len(self.created) < 2:
            tool = "create_entities"
        if tool == "create_entities" and len(self.created) >= NAMES_PER_CLIENT:
            tool = "add_observations"
        return tool, getattr(self, f"_{tool}")()

    # -- the engine's tools -----------------------------------------------------------------------
    def _search(self) -> dict[str, Any]:
        return {"query": self.rng.choice(self.queries), "k": 5}

    def _recall(self) -> dict[str, Any]:
        return {"query": self._phrase(), "agent_id": self.agent, "k": 5}

    def _remember(self) -> dict[str, Any]:
        session = f"session-{self.counter // 50:04d}"
        text = f"Call {self.counter}: checked the {self._phrase(4)} for {self.rng.choice(self.queries)[:80]}"
        return {"content": text, "agent_id": self.agent, "session_id": session}

    def _get_entities(self) -> dict[str, Any]:
        return {"ids": self.rng.sample(list(self.seen_ids), min(3, len(self.seen_ids)))}

    def _neighbors(self) -> dict[str, Any]:
        return {"ids": [self.rng.choice(self.seen_ids)], "depth": 1, "limit": 50}

    # -- the memory-server tools ------------------------------------------------------------------
    def _create_entities(self) -> dict[str, Any]:
        start = len(self.created)
        names = [self._name(n) for n in range(start, min(start + 2, NAMES_PER_CLIENT))]
        return {
            "entities": [
                {"name": n, "entityType": "soak_item", "observations": [f"created by {self.agent}"]} for n in names
            ]
        }

    def _add_observations(self) -> dict[str, Any]:
        name = self.rng.choice(self.created)
        return {"observations": [{"entityName": name, "contents": [f"{self._phrase(2)} noted at {self.counter}"]}]}

    def _create_relations(self) -> dict[str, Any]:
        a, b = self.rng.sample(self.created, 2)
        return {"relations": [{"from": a, "to": b, "relationType": self.rng.choice(["depends_on", "follows"])}]}

    def _search_nodes(self) -> dict[str, Any]:
        return {"query": self.rng.choice([self.agent, *WORDS])}

    def _open_nodes(self) -> dict[str, Any]:
        return {"names": self.rng.sample(self.created, min(3, len(self.created)))}

    def _read_graph(self) -> dict[str, Any]:
        return {}

    # -- learning from answers ----------------------------------------------------------------------
    def absorb(self, tool: str, arguments: dict[str, Any], structured: Any) -> tuple[str, dict[str, Any]] | None:
        """Update the pools from a successful answer; returns a follow-up call that keeps the
        memory graph bounded (deleting the oldest observation of an entity that has too many)."""
        if tool == "search" and isinstance(structured, dict):
            self.seen_ids.extend(h["id"] for h in structured.get("hits", []) if isinstance(h, dict) and "id" in h)
        elif tool == "create_entities":
            for entity in arguments["entities"]:
                if entity["name"] not in self.observations:
                    self.created.append(entity["name"])
                    self.observations[entity["name"]] = deque(entity["observations"])
        elif tool == "add_observations":
            for item in arguments["observations"]:
                kept = self.observations[item["entityName"]]
                kept.extend(item["contents"])
                if len(kept) > MAX_OBSERVATIONS:
                    oldest = kept.popleft()
                    return "delete_observations", {
                        "deletions": [{"entityName": item["entityName"], "observations": [oldest]}]
                    }
        return None
