"""Loaders for evaluation folders laid out like `../shared/evaldata/` (see its README).

Each loader returns a `Dataset`: the items to ingest and the questions with their gold item keys.
A folder that is missing is skipped by the caller with a note.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import tokenize
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

csv.field_size_limit(1 << 26)


@dataclass
class Doc:
    key: str
    title: str
    text: str


@dataclass
class Turn:
    key: str  # dia_id, e.g. "D1:3"
    conversation: str
    session: str
    speaker: str
    text: str
    when: datetime


@dataclass
class Question:
    qid: str
    text: str
    gold: set[str]
    category: str
    scope: str | None = None  # for conversations: which conversation the question is about
    # Where the dataset names the sentences that hold the evidence: gold key -> evidence sets, each
    # a list of sentence texts that together are the evidence (any one set is enough). A gold key
    # without an entry is evidence as a whole item.
    evidence: dict[str, list[list[str]]] = field(default_factory=dict)


@dataclass
class Dataset:
    name: str
    kind: str  # "documents" or "conversation"
    docs: list[Doc] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _questions_files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern))


def load_musique(folder: Path) -> Dataset:
    ds = Dataset("musique", "documents")
    corpus = json.loads((folder / "corpus.json").read_text())
    index: dict[tuple[str, str], str] = {}
    for i, row in enumerate(corpus):
        key = f"p{i}"
        ds.docs.append(Doc(key, row["title"], row["text"]))
        index.setdefault((row["title"], row["text"].strip()), key)
    for path in _questions_files(folder, "questions_*.json"):
        for q in json.loads(path.read_text()):
            gold = set()
            for p in q["paragraphs"]:
                if p.get("is_supporting"):
                    found = index.get((p["title"], p["paragraph_text"].strip()))
                    if found is None:
                        ds.notes.append(f"musique {q['id']}: supporting paragraph {p['title']!r} not in corpus")
                    else:
                        gold.add(found)
            hops = q["id"].split("hop")[0] + "hop" if "hop" in q["id"] else "multi-hop"
            if gold:
                ds.questions.append(Question(q["id"], q["question"], gold, hops))
    return ds


def load_hotpotqa(folder: Path) -> Dataset:
    ds = Dataset("hotpotqa", "documents")
    corpus = json.loads((folder / "corpus.json").read_text())
    for title, sentences in corpus.items():
        ds.docs.append(Doc(title, title, "".join(sentences).strip()))
    titles = set(corpus)
    for path in _questions_files(folder, "questions_*.json"):
        for q in json.loads(path.read_text()):
            gold = {t for t, _ in q["supporting_facts"] if t in titles}
            # a title's supporting facts are one evidence set: the question needs all of them
            facts: dict[str, list[str]] = {}
            for title, index in q["supporting_facts"]:
                if title in titles and isinstance(index, int) and 0 <= index < len(corpus[title]):
                    facts.setdefault(title, []).append(corpus[title][index])
            if gold:
                evidence = {t: [sentences] for t, sentences in facts.items()}
                ds.questions.append(Question(q["_id"], q["question"], gold, q.get("type", "all"), evidence=evidence))
    return ds


def _string_list(text: str) -> list[str]:
    """The strings of a list written as Python (`['a', 'b']`) or as numpy prints one (`['a'\n 'b']`,
    no commas: `ast.literal_eval` would glue the sentences together), each stripped; [] if none."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    out: list[str] = []
    for token in tokens:
        if token.type == tokenize.STRING:
            try:
                value = ast.literal_eval(token.string)
            except (ValueError, SyntaxError):
                return []
            if isinstance(value, str):
                out.append(value.strip())
    return out


def load_scifact(folder: Path) -> Dataset:
    ds = Dataset("scifact", "documents")
    sentences_of: dict[str, list[str]] = {}
    with open(folder / "corpus.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            sentences = _string_list(row["abstract"])
            if sentences:
                abstract = " ".join(sentences)
                sentences_of[row["doc_id"]] = sentences
            else:
                abstract = row["abstract"]
            ds.docs.append(Doc(row["doc_id"], row["title"], abstract))
    seen: dict[str, Question] = {}
    for path in _questions_files(folder, "claims_*.csv"):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                # lists are written either as Python lists or numpy arrays ("[ 5152028 11705328]")
                cited = set(re.findall(r"\d+", row["cited_doc_ids"] or ""))
                if row["id"] in seen:
                    seen[row["id"]].gold |= cited
                elif cited:
                    seen[row["id"]] = Question(row["id"], row["claim"], cited, "claim")
                else:
                    continue
                # a row with an evidence document gives one rationale: sentences of its abstract
                doc, indices = (
                    (row["evidence_doc_id"] or "").strip(),
                    re.findall(r"\d+", row["evidence_sentences"] or ""),
                )
                abstract_sentences = sentences_of.get(doc, [])
                rationale = [abstract_sentences[int(i)] for i in indices if int(i) < len(abstract_sentences)]
                if doc in seen[row["id"]].gold and rationale and len(rationale) == len(indices):
                    seen[row["id"]].evidence.setdefault(doc, []).append(rationale)
    ds.questions = list(seen.values())
    return ds


_DIA = re.compile(r"D(\d+):(\d+)")
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


def _parse_locomo_time(text: str) -> datetime:
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y")


def load_locomo(folder: Path) -> Dataset:
    ds = Dataset("locomo", "conversation")
    for path in sorted(folder.glob("*.json")):
        for sample in json.loads(path.read_text()):
            conv = sample["conversation"]
            cid = str(sample["sample_id"])
            n = 1
            while f"session_{n}" in conv:
                when = _parse_locomo_time(conv[f"session_{n}_date_time"])
                for turn in conv[f"session_{n}"]:
                    text = turn["text"]
                    if turn.get("blip_caption"):
                        text += f" [shares a photo: {turn['blip_caption']}]"
                    ds.turns.append(Turn(turn["dia_id"], cid, f"session_{n}", turn["speaker"], text, when))
                n += 1
            keys = {t.key for t in ds.turns if t.conversation == cid}
            for i, qa in enumerate(sample["qa"]):
                gold: set[str] = set()
                for raw in qa.get("evidence", []):
                    for m in _DIA.finditer(str(raw).replace("D:", "D")):
                        key = f"D{int(m.group(1))}:{int(m.group(2))}"
                        if key in keys:
                            gold.add(key)
                if not gold:
                    continue
                category = CATEGORIES.get(int(qa.get("category", 0)), str(qa.get("category")))
                ds.questions.append(Question(f"{cid}-{i}", qa["question"], gold, category, scope=cid))
    return ds


LOADERS = {"locomo": load_locomo, "musique": load_musique, "hotpotqa": load_hotpotqa, "scifact": load_scifact}


def load_all(data: Path, names: list[str]) -> tuple[list[Dataset], list[str]]:
    found, notes = [], []
    for name in names:
        folder = data / name
        if not folder.is_dir():
            notes.append(f"{name}: no folder {folder}, skipped")
            continue
        found.append(LOADERS[name](folder))
    return found, notes
