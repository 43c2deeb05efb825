"""python -m benchmarks.quality.knowledge_update [--out DIR] [--extractor default|rules]

Knowledge-update questions in the style of LongMemEval's category: multi-session conversations
(`fixtures/knowledge_update.json`, written for this benchmark) in which facts change — moves, job
and role changes, project status, ownership, versions — and questions about what holds at the end.
Every conversation is remembered through the engine's normal API (`remember_many`, one agent per
conversation, turns with their speaker and time) twice: with `memory_supersede` off (the engine
before memory facts were kept true) and on. Each question is asked with `recall`; the report gives
recall@k of the *current* evidence, MRR, and how often a superseded turn is ranked first.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.quality.metrics import mrr, recall_at

FIXTURE = Path(__file__).with_name("fixtures") / "knowledge_update.json"
REPO = Path(__file__).resolve().parents[2]
KS = (1, 3, 5, 10)
CONFIGS = (("supersede off (before)", False), ("supersede on (after)", True))


@dataclass(frozen=True)
class Turn:
    key: str
    conversation: str
    session: str
    speaker: str
    text: str
    at: datetime


@dataclass(frozen=True)
class UpdateQuestion:
    conversation: str
    text: str
    gold: frozenset[str]
    stale: frozenset[str]


def load(path: Path = FIXTURE) -> tuple[list[Turn], list[UpdateQuestion]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    turns: list[Turn] = []
    questions: list[UpdateQuestion] = []
    for conv in data["conversations"]:
        for n, session in enumerate(conv["sessions"], 1):
            start = datetime.fromisoformat(session["time"].replace("Z", "+00:00"))
            for i, (key, speaker, text) in enumerate(session["turns"]):
                turns.append(Turn(key, conv["id"], f"{conv['id']}-s{n}", speaker, text, start + timedelta(minutes=i)))
        for q in conv["questions"]:
            questions.append(UpdateQuestion(conv["id"], q["q"], frozenset(q["gold"]), frozenset(q["stale"])))
    return turns, questions


def run_config(supersede: bool, turns: list[Turn], questions: list[UpdateQuestion], extractor: str) -> dict[str, Any]:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings
    from aesoperator.graph_schema.models import Episode

    with tempfile.TemporaryDirectory(prefix="aesop-ku-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", memory_supersede=supersede, extractor=extractor)
        with ContextEngine.open(settings=settings) as engine:
            key_of: dict[str, str] = {}
            started = time.perf_counter()
            for conv in sorted({t.conversation for t in turns}):
                mine = [t for t in turns if t.conversation == conv]
                episodes = [
                    Episode(
                        id=t.key,
                        content=t.text,
                        agent_id=conv,
                        session_id=t.session,
                        created_at=t.at,
                        metadata={"speaker": t.speaker},
                    )
                    for t in mine
                ]
                for turn, stored in zip(mine, engine.memory.remember_many(episodes), strict=True):
                    key_of[stored.id] = turn.key
            load_s = time.perf_counter() - started
            rows = []
            for q in questions:
                result = engine.recall(q.text, agent_id=q.conversation, k=max(KS))
                ranked = [key_of.get(r.episode.id, r.episode.id) for r in result.episodes]
                row: dict[str, Any] = {f"recall@{k}": recall_at(ranked, set(q.gold), k) for k in KS}
                row["mrr"] = mrr(ranked, set(q.gold))
                row["stale_first"] = 1.0 if ranked and ranked[0] in q.stale else 0.0
                row["stale_in_top3"] = 1.0 if set(ranked[:3]) & q.stale else 0.0
                rows.append({"question": q.text, "conversation": q.conversation, "ranked": ranked[:5], **row})
    metrics = sorted({m for r in rows for m in r if m.startswith(("recall@", "mrr", "stale"))})
    means = {m: sum(float(r[m]) for r in rows) / len(rows) for m in metrics}
    return {"supersede": supersede, "load_seconds": round(load_s, 2), "means": means, "questions": rows}


def report_markdown(results: list[dict[str, Any]], command: str, n_questions: int, n_turns: int) -> str:
    metrics = [*(f"recall@{k}" for k in KS), "mrr", "stale_first", "stale_in_top3"]
    lines = [
        "# Knowledge-update questions: recall of the current evidence",
        "",
        f"`{command}` — {n_questions} questions over {n_turns} turns in "
        f"{len({q['conversation'] for q in results[0]['questions']})} multi-session conversations "
        "(`benchmarks/quality/fixtures/knowledge_update.json`). `recall@k`: share of the turns stating the "
        "current value found in the top k; `stale_first` / `stale_in_top3`: share of questions whose first "
        "(top three) recalled turns include a superseded value.",
        "",
        "| configuration | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for (name, _), res in zip(CONFIGS, results, strict=True):
        lines.append(f"| {name} | " + " | ".join(f"{res['means'][m]:.3f}" for m in metrics) + " |")
    lines += ["", "Per question (top 5 recalled turns, supersede off → on):", ""]
    for off, on in zip(results[0]["questions"], results[1]["questions"], strict=True):
        lines.append(f"- {off['question']} — off {off['ranked']} → on {on['ranked']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="where results go")
    parser.add_argument("--extractor", default="default", choices=["default", "rules"], help="knowledge extractor")
    args = parser.parse_args(argv)
    turns, questions = load()
    results = [run_config(supersede, turns, questions, args.extractor) for _, supersede in CONFIGS]
    command = "python -m benchmarks.quality.knowledge_update" + (
        f" --extractor {args.extractor}" if args.extractor != "default" else ""
    )
    text = report_markdown(results, command, len(questions), len(turns))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "knowledge-update-latest.md").write_text(text, encoding="utf-8")
    payload = {"command": command, "configs": [{"name": n, **r} for (n, _), r in zip(CONFIGS, results, strict=True)]}
    (args.out / "knowledge-update-latest.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
