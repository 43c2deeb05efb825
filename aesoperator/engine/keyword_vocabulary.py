"""The keyword index's vocabulary: FTS5 terms numbered, and documents turned into term counts.

Words are cut into terms exactly as the embedded store's FTS5 table cuts them (`fts_terms`), each
distinct word once; a memo keeps word -> term id so a word seen before costs a dict lookup. A
document is its weighted term frequencies (a name hit weighs `weights[0]`, a text hit
`weights[1]`) and its length in tokens, which is what `KeywordPostings` stores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from aesoperator.engine.fts_terms import FtsTermMaker
from aesoperator.engine.stores.embedded_rows import query_phrases
from aesoperator.graph_schema.models import Entity

WORD_MEMO_MAX = 2_000_000  # distinct words remembered with their term ids
MULTI = -1  # in the word and name maps: "several (or no) values, kept in the side table"


class KeywordVocabulary:
    """Term ids by term, and the memo of words to term ids. Not locked; KeywordIndex locks."""

    def __init__(self, terms: FtsTermMaker, weights: tuple[float, float], names: Sequence[str] = ()) -> None:
        """`terms` is the tokenizer (kept across resets); `names` the terms of a saved vocabulary."""
        self.terms = terms
        self.weights = weights
        self.term_str: list[str] = list(names)
        self.term_of: dict[str, int] = {t: i for i, t in enumerate(self.term_str)}
        # word -> its term id (a memo of the vocabulary above, so it goes with it); words FTS5
        # cuts into several terms, or none, map to MULTI and their terms are in `word_terms`.
        # Plain ints keep these dicts out of the garbage collector's traversals.
        self.word_ids: dict[str, int] = {}
        self.word_terms: dict[str, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self.term_str)

    def term_id(self, term: str) -> int:
        tid = self.term_of.get(term)
        if tid is None:
            tid = self.term_of[term] = len(self.term_str)
            self.term_str.append(term)
        return tid

    def learn(self, word_lists: Sequence[Sequence[str]]) -> None:
        """Give every word not seen yet its term ids (one SQLite round trip for all of them)."""
        known = self.word_ids
        new = list({w: None for words in word_lists for w in words if w not in known})
        if not new:
            return
        if len(known) + len(new) > WORD_MEMO_MAX:
            known.clear()
            self.word_terms.clear()
        for word, terms in zip(new, self.terms.tokenize(new), strict=True):
            if len(terms) == 1:
                known[word] = self.term_id(terms[0])
            else:
                known[word] = MULTI
                self.word_terms[word] = tuple(self.term_id(t) for t in terms)

    def term_ids_of(self, words: Sequence[str]) -> list[int]:
        try:
            ids = list(map(self.word_ids.__getitem__, words))
        except KeyError:  # the memo was cleared by a batch learned meanwhile
            self.learn([words])
            ids = list(map(self.word_ids.__getitem__, words))
        if ids and min(ids) == MULTI:
            ids = self._expand_multi(words, ids)
        return ids

    def _expand_multi(self, words: Sequence[str], ids: list[int]) -> list[int]:
        out: list[int] = []
        for word, tid in zip(words, ids, strict=True):
            if tid == MULTI:
                out.extend(self.word_terms[word])
            else:
                out.append(tid)
        return out

    def weighted_counts(self, name_words: Sequence[str], text_words: Sequence[str]) -> tuple[dict[int, float], int]:
        """term id -> weighted frequency (name hits count `weights[0]`, text hits `weights[1]`),
        and the document's length in tokens (both columns, unweighted, as FTS5 counts it)."""
        name_ids = self.term_ids_of(name_words)
        text_ids = self.term_ids_of(text_words)
        w_name, w_text = self.weights
        counts: dict[int, float] = {tid: n * w_text for tid, n in Counter(text_ids).items()}
        for tid, n in Counter(name_ids).items():
            counts[tid] = counts.get(tid, 0.0) + n * w_name
        return counts, len(name_ids) + len(text_ids)

    def documents(self, entities: Sequence[Entity]) -> list[tuple[dict[int, float], int]]:
        """`weighted_counts` of each entity, with the batch's new words learned in one go."""
        words = [(self.terms.words(e.name), self.terms.words(e.text or "")) for e in entities]
        self.learn([w for pair in words for w in pair])
        return [self.weighted_counts(name, text) for name, text in words]

    def query_terms(self, query: str) -> list[tuple[str, str]]:
        """(query word, FTS5 term) pairs in query order, before pruning. Each word is one phrase of
        the store's FTS5 query; a word FTS5 cuts into several terms (rare: some scripts with
        combining marks) is scored as separate terms here, where FTS5 would match the phrase."""
        words = query_phrases(query)
        return [(w, t) for w, terms in zip(words, self.terms.terms_of_words(words), strict=True) for t in terms]
