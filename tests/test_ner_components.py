"""The NER model runs with only the components its findings need, and finds the same as with the
shared tok2vec loaded."""

from __future__ import annotations

import importlib

from aesoperator.ingest.extract.ner import MODEL_PACKAGE, load_model

TEXTS = [
    "Grace Hopper joined the Navy in 1943 and later worked for Remington Rand in Philadelphia.",
    "The European Space Agency launched Rosetta from Kourou on 2 March 2004.",
    "Alan Turing studied at King's College, Cambridge, and worked at Bletchley Park.",
]


def test_only_the_tokenizer_and_ner_run_and_find_what_the_fuller_pipeline_finds() -> None:
    nlp = load_model()
    assert nlp.pipe_names == ["ner"]
    fuller = importlib.import_module(MODEL_PACKAGE).load(
        exclude=["tagger", "parser", "lemmatizer", "attribute_ruler", "senter"]
    )
    assert "tok2vec" in fuller.pipe_names

    def found(model: object) -> list[list[tuple[int, int, str]]]:
        return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in model.pipe(TEXTS)]  # type: ignore[attr-defined]

    ours = found(nlp)
    assert ours == found(fuller)
    assert any(label == "PERSON" for ents in ours for _, _, label in ents)
