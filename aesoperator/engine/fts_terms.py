"""Terms exactly as the embedded store's FTS5 index makes them, for the in-memory keyword index.

SQLite's `porter unicode61 remove_diacritics 2` tokenizer folds case, strips diacritics and
stems with its own variant of the Porter algorithm (it maps "-logi" to "-log" and "-bli" to
"-ble", which the reference algorithm does not), so no Python stemmer reproduces it word for word.
Instead each distinct word is handed once to an in-memory FTS5 table with that tokenizer and the
terms it produced are read back through `fts5vocab`; the answer is memoised. Text is cut only at
ASCII characters other than letters and digits, which unicode61 always treats as separators, so
cutting first and tokenizing each piece gives FTS5's own terms; everything else (accents, other
scripts, punctuation outside ASCII, emoji, which unicode61 keeps in tokens) is left to SQLite.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence

from aesoperator.engine.stores.embedded_schema import FTS_TOKENIZER

# Runs of ASCII letters and digits and of any non-ASCII character.
_PIECE = re.compile(r"[0-9A-Za-z\u0080-\U0010FFFF]+")
_BATCH = 20_000
# Memo entries kept before the memo is cleared (distinct words; a few hundred bytes each).
MEMO_MAX = 2_000_000


class FtsTermMaker:
    """Maps text to FTS5 terms (strings) with a memo of word -> terms. Thread-safe."""

    def __init__(self, tokenizer: str = FTS_TOKENIZER) -> None:
        self.tokenizer = tokenizer
        self._memo: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        quoted = tokenizer.replace("'", "''")
        self._conn.execute(f"CREATE VIRTUAL TABLE words USING fts5(w, tokenize = '{quoted}')")
        self._conn.execute("CREATE VIRTUAL TABLE word_terms USING fts5vocab(words, 'instance')")

    def words(self, text: str) -> list[str]:
        return _PIECE.findall(text)

    def terms(self, text: str) -> list[str]:
        """The terms of `text` in order, repeats included (their count is FTS5's token count)."""
        words = _PIECE.findall(text)
        memo = self._memo
        if any(w not in memo for w in words):
            self.learn(words)
            memo = self._memo
        out: list[str] = []
        for word in words:
            found = memo.get(word)
            out.extend(found if found is not None else self._one(word))
        return out

    def terms_of_words(self, words: Iterable[str]) -> list[tuple[str, ...]]:
        """The terms of each word, in order."""
        words = list(words)
        missing = [w for w in words if w not in self._memo]
        if missing:
            self.learn(missing)
        return [self._memo.get(w) or self._one(w) for w in words]

    def _one(self, word: str) -> tuple[str, ...]:
        """A word the memo lost to a concurrent clear."""
        with self._lock:
            return self._tokenize([word])[word]

    def learn(self, words: Iterable[str]) -> None:
        """Tokenize the words not memoised yet (in batches of one SQLite transaction each)."""
        with self._lock:
            new = list(dict.fromkeys(w for w in words if w not in self._memo))
            if not new:
                return
            if len(self._memo) + len(new) > MEMO_MAX:
                self._memo = {}
            for start in range(0, len(new), _BATCH):
                self._memo.update(self._tokenize(new[start : start + _BATCH]))

    def tokenize(self, words: Sequence[str]) -> list[tuple[str, ...]]:
        """The terms of each word, without the memo (for callers that keep their own)."""
        out: list[tuple[str, ...]] = []
        with self._lock:
            for start in range(0, len(words), _BATCH):
                batch = list(words[start : start + _BATCH])
                found = self._tokenize(batch)
                out.extend(found[w] for w in batch)
        return out

    def _tokenize(self, words: list[str]) -> dict[str, tuple[str, ...]]:
        conn = self._conn
        found: dict[int, list[str]] = {i: [] for i in range(len(words))}
        with conn:
            conn.execute("DELETE FROM words")
            conn.executemany("INSERT INTO words(rowid, w) VALUES (?, ?)", enumerate(words))
            for doc, term in conn.execute("SELECT doc, term FROM word_terms ORDER BY doc, offset"):
                found[int(doc)].append(term)
            conn.execute("DELETE FROM words")
        return {w: tuple(found[i]) for i, w in enumerate(words)}

    def close(self) -> None:
        self._conn.close()
