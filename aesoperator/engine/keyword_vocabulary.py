"""The keyword index's vocabulary: FTS5 terms numbered, and documents turned into term counts.

Words are cut into terms exactly as the embedded store's FTS5 table cuts them (`fts_terms`), each
distinct word once; a memo keeps word -> term id so a word seen before costs a dict lookup. A
document is its weighted term frequencies (a name hit weighs `weights[0]`, a text hit
`weights[1]`) and its length in tokens, which is what `KeywordPostings` stores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat

import numpy as np

from aesoperator.engine.fts_terms import FtsTermMaker
from aesoperator.engine.stores.embedded_rows import query_phrases
from aesoperator.graph_schema.models import Entity

WORD_MEMO_MAX = 2_000_000  # distinct words remembered with their term ids
MULTI = -1  # in the word and name maps: "several (or no) values, kept in the side table"
UNKNOWN = -2  # a word not learned yet (only while a batch is being counted)


@dataclass(frozen=True, slots=True)
class BatchPostings:
    """The postings of a batch of documents, as arrays: one row per (document, term) pair, in
    document order and then term id order, with its weighted frequency (what `weighted_counts`
    gives, to the bit); and each document's length in tokens and number of distinct terms."""

    docs: np.ndarray  # int64: the document's position in the batch
    terms: np.ndarray  # int32 term ids
    freqs: np.ndarray  # float32
    lengths: np.ndarray  # int64, per document
    distinct: np.ndarray  # int64, per document


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
        # Distinct words first (in C), then the membership test on those only; first-seen order.
        new = [w for w in dict.fromkeys(chain.from_iterable(word_lists)) if w not in known]
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

    def batch_postings(self, names: Sequence[str], texts: Sequence[str]) -> BatchPostings:
        """`documents` for a whole batch at once, in arrays: one dict lookup per word and numpy for
        the counting (a full rebuild spends most of its time here)."""
        n = len(names)
        name_words = [self.terms.words(name) for name in names]
        text_words = [self.terms.words(text) for text in texts]
        name_flat = list(chain.from_iterable(name_words))
        text_flat = list(chain.from_iterable(text_words))
        name_docs = np.repeat(np.arange(n, dtype=np.int64), [len(words) for words in name_words])
        text_docs = np.repeat(np.arange(n, dtype=np.int64), [len(words) for words in text_words])
        name_ids = self._known_ids(name_flat)
        text_ids = self._known_ids(text_flat)
        self._learn_unknown(name_flat, name_docs, name_ids, text_flat, text_docs, text_ids)
        name_docs, name_ids = self._expand_multi_terms(name_flat, name_docs, name_ids)
        text_docs, text_ids = self._expand_multi_terms(text_flat, text_docs, text_ids)
        width = max(len(self.term_str), 1)
        keys = np.concatenate([name_docs * width + name_ids, text_docs * width + text_ids])
        pairs, pair_of = np.unique(keys, return_inverse=True)
        in_name = np.bincount(pair_of[: len(name_ids)], minlength=len(pairs))
        in_text = np.bincount(pair_of[len(name_ids) :], minlength=len(pairs))
        w_name, w_text = self.weights
        # Text first, then name: the float64 sum `weighted_counts` makes, then float32 as stored.
        freqs = (in_text * w_text + in_name * w_name).astype(np.float32)
        docs = pairs // width
        return BatchPostings(
            docs=docs,
            terms=(pairs % width).astype(np.int32),
            freqs=freqs,
            lengths=np.bincount(name_docs, minlength=n) + np.bincount(text_docs, minlength=n),
            distinct=np.bincount(docs, minlength=n),
        )

    def _known_ids(self, flat: Sequence[str]) -> np.ndarray:
        """Each word's memoised term id (or MULTI), UNKNOWN for a word not learned yet."""
        return np.fromiter(map(self.word_ids.get, flat, repeat(UNKNOWN)), dtype=np.int64, count=len(flat))

    def _learn_unknown(
        self,
        name_flat: Sequence[str],
        name_docs: np.ndarray,
        name_ids: np.ndarray,
        text_flat: Sequence[str],
        text_docs: np.ndarray,
        text_ids: np.ndarray,
    ) -> None:
        """Learn the words `_known_ids` did not know and fill in their ids. They are learned in the
        order `documents` meets them (each document's name, then its text), so terms get the same ids."""
        in_name = np.flatnonzero(name_ids == UNKNOWN)
        in_text = np.flatnonzero(text_ids == UNKNOWN)
        if not len(in_name) and not len(in_text):
            return
        words = [name_flat[p] for p in in_name.tolist()] + [text_flat[p] for p in in_text.tolist()]
        met = np.argsort(np.concatenate([name_docs[in_name] * 2, text_docs[in_text] * 2 + 1]), kind="stable")
        self.learn([[words[i] for i in met.tolist()]])
        # A memo cleared by that learning keeps every term id found before it valid.
        known = self.word_ids
        name_ids[in_name] = [known[name_flat[p]] for p in in_name.tolist()]
        text_ids[in_text] = [known[text_flat[p]] for p in in_text.tolist()]

    def _expand_multi_terms(
        self, flat: Sequence[str], docs: np.ndarray, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(document position, term id) of every term: a word of several terms gives each of them,
        a word of none gives nothing."""
        multi = np.flatnonzero(ids == MULTI)
        if not len(multi):
            return docs, ids
        expansions = [self._terms_of_multi(flat[p]) for p in multi.tolist()]
        reps = np.ones(len(ids), dtype=np.int64)
        reps[multi] = [len(terms) for terms in expansions]
        starts = np.cumsum(reps) - reps
        ids, docs = np.repeat(ids, reps), np.repeat(docs, reps)
        for position, terms in zip(starts[multi].tolist(), expansions, strict=True):
            ids[position : position + len(terms)] = terms
        return docs, ids

    def _terms_of_multi(self, word: str) -> tuple[int, ...]:
        terms = self.word_terms.get(word)
        if terms is None:  # the memo was cleared since the word's id was read: learn it again
            self.learn([[word]])
            terms = self.word_terms[word]
        return terms

    def query_terms(self, query: str) -> list[tuple[str, str]]:
        """(query word, FTS5 term) pairs in query order, before pruning. Each word is one phrase of
        the store's FTS5 query; a word FTS5 cuts into several terms (rare: some scripts with
        combining marks) is scored as separate terms here, where FTS5 would match the phrase."""
        words = query_phrases(query)
        return [(w, t) for w, terms in zip(words, self.terms.terms_of_words(words), strict=True) for t in terms]
