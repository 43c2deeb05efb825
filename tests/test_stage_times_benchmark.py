"""`benchmarks.speed.stage_times` times a checkout's search stages on a kept data dir, running the
engine of the checkout it is given (not the one on the default path)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aesoperator import ContextEngine
from aesoperator.config import Settings
from aesoperator.graph_schema.models import Entity, Relation
from benchmarks.speed import keyword_search, stage_times

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _questions(folder: Path) -> None:
    """A two-question HotpotQA-shaped split over a three-article corpus."""
    folder.mkdir(parents=True)
    corpus = {
        "Ada Lovelace": ["Ada Lovelace wrote the first published algorithm. ", "She worked with Babbage."],
        "Analytical Engine": ["The Analytical Engine was a design for a mechanical computer."],
        "Charles Babbage": ["Charles Babbage designed the Analytical Engine."],
    }
    (folder / "corpus.json").write_text(json.dumps(corpus))
    questions = [
        {"_id": "q1", "question": "Who wrote the first published algorithm?", "answer": "Ada Lovelace",
         "type": "bridge", "level": "easy", "supporting_facts": [["Ada Lovelace", 0]], "context": []},
        {"_id": "q2", "question": "Which engine did Babbage design?", "answer": "Analytical Engine",
         "type": "bridge", "level": "easy", "supporting_facts": [["Charles Babbage", 0]], "context": []},
    ]  # fmt: skip
    (folder / "questions_dev.json").write_text(json.dumps(questions))


@pytest.mark.timeout(600)
def test_stage_times_runs_the_given_checkout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    engine = ContextEngine.open(settings=Settings(data_dir=data_dir))
    try:
        engine.upsert(
            [
                Entity(
                    id="doc:ada", type="Document", name="Ada Lovelace", text="Ada Lovelace wrote the first algorithm."
                ),
                Entity(id="doc:babbage", type="Document", name="Charles Babbage", text="Babbage designed an engine."),
            ],
            [Relation(type="REFERENCES", src="doc:ada", dst="doc:babbage")],
        )
    finally:
        engine.close()
    os.chmod(data_dir, 0o700)
    _questions(tmp_path / "evaldata" / "hotpotqa")
    out = tmp_path / "stages.json"
    code = stage_times.main(
        ["--data-dir", str(data_dir), "--data", str(tmp_path / "evaldata"), "--tree", str(ROOT), "--rounds", "2",
         "--questions", "2", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    runs = json.loads(out.read_text())["runs"]
    assert [r["round"] for r in runs] == [1, 2]
    for run in runs:
        stages = run["stages_ms"]
        assert len(stages["total excl. embedding"]) == 2  # one timed search per question
        assert len(stages[stage_times.WALL]) == 2  # and each question's first, end to end
        assert min(stages[stage_times.WALL]) >= min(stages["total excl. embedding"])
        assert len(stages[stage_times.FIRST]) == 2  # the first search's stages, embedding left out
        assert min(stages[stage_times.WALL]) >= min(stages[stage_times.FIRST])
        assert {"vector", "keyword", "load", "expand", "pack"} <= set(stages)
        assert all(v >= 0 for values in stages.values() for v in values)
    printed = capsys.readouterr().err
    assert "total p50" in printed and "wall p50" in printed


@pytest.mark.timeout(600)
def test_keyword_search_times_the_saved_index_of_each_checkout(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    engine = ContextEngine.open(settings=Settings(data_dir=data_dir))
    try:
        engine.upsert(
            [
                Entity(id=f"doc:{i}", type="Document", name=f"Note {i}", text=f"Babbage designed engine part {i}.")
                for i in range(30)
            ],
            embed=False,
        )
        assert engine.search("engine part 7", k=5, channels=("keyword",)).hits  # builds the keyword index
    finally:
        engine.close()  # saves it
    _questions(tmp_path / "evaldata" / "hotpotqa")
    out = tmp_path / "keyword.json"
    code = keyword_search.main(
        ["--data-dir", str(data_dir), "--data", str(tmp_path / "evaldata"), "--tree", str(ROOT), "--tree", str(ROOT),
         "--rounds", "2", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    first, second = report["runs"]
    assert report["questions"] == 2 and first["documents"] == 30
    assert len(first["rounds"]) == 2 and all(r["p95_ms"] >= r["p50_ms"] > 0 for r in first["rounds"])
    assert first["answers_digest"] == second["answers_digest"]  # the same checkout answers the same


def test_keyword_search_refuses_a_store_without_a_saved_index(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no saved keyword index"):
        keyword_search.main(["--data-dir", str(tmp_path)])


def test_stage_times_refuses_a_checkout_without_an_engine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="has no aesoperator package"):
        stage_times.main(["--data-dir", str(tmp_path), "--tree", str(tmp_path / "empty"), "--rounds", "1"])
