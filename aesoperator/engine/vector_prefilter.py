"""An 8-bit copy of a large exact sub-index, which finds the same top k reading a quarter of the bytes.

An exact search of one query over n float32 vectors reads 4·d bytes a vector: at 100,000
384-dimensional vectors, 154 MB a query, bound by memory bandwidth (about 7 ms on two cores). The
copy holds every vector also as d signed bytes (each value times its dimension's scale, rounded),
in two FAISS shards scanned on two threads. Their best candidates are then rescored from the
float32 rows, and the answer is kept only when it is provably the exact one:

- each vector's rounding error e_i = |x_i - x̂_i| is measured when it is encoded, and the largest,
  E, is kept; the scan also rounds the query (to q̃), and |q - q̃| is known;
- by Cauchy-Schwarz a vector's exact score is within |q|·E + |q - q̃|·(1 + E) of its 8-bit
  score, so a vector a shard did not return scores at most that shard's lowest returned 8-bit
  score plus this bound;
- when the k-th best rescored candidate scores above that for every shard, no vector outside the
  candidates can enter the top k. Otherwise the candidates grow; past a quarter of the rows the
  caller runs the full float32 product instead.

So the answer is the exact search's, up to float rounding of the scores (the products run in
another order). The copy is derived: the caller builds it (`VectorPartitions.exact_top`, at a
namespace's second search), it follows the sub-index's adds and removals, and it is never saved.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from aesoperator.engine.vector_filter import LabelFilter
from aesoperator.engine.worker_pool import LazyPool

# Default of the `vector_prefilter_min` setting: below about this many rows the float32 product
# is as fast (on two cores, 1.3 ms at 20,000 vectors, where the prefilter takes 2 ms with k = 400).
DEFAULT_PREFILTER_MIN = 40_000
# Rows encoded at a time: bounds the float32 scratch of an encode to CHUNK_ROWS x d.
CHUNK_ROWS = 16_384
# Candidates each shard returns first: twice k (each holds about half of the top k), plus some;
# then four times more per round. On the speed suite's 100k vectors with k = 400, proving the
# top k took about 1,000 candidates in all: the bound (about 0.018) is wide beside the spread of
# scores near the 400th.
FIRST_PER_K = 2
FIRST_EXTRA = 64
GROWTH = 4
# Give up on the prefilter once a shard would return this share of its rows.
MAX_SHARE = 0.25
# Slack for float rounding in the bound and the rescoring (scores are cosines, in [-1, 1]).
ROUNDING_SLACK = 1e-5
# Encoding stops fitting when a new vector's largest value passes the scale's range by this much.
RANGE_HEADROOM = 1.1
SHARDS = 2

# One FAISS thread per worker (the setting is per thread): the shards already run side by side.
_pool = LazyPool(SHARDS - 1, "vector-prefilter", initializer=faiss.omp_set_num_threads, initargs=(1,))


def _new_shard(dim: int) -> faiss.IndexIDMap:
    codes = faiss.IndexScalarQuantizer(
        dim,
        faiss.ScalarQuantizer.QT_8bit_direct_signed,
        faiss.METRIC_INNER_PRODUCT,
    )
    return faiss.IndexIDMap(codes)


def _search_shard(
    shard: faiss.IndexIDMap, query: np.ndarray, m: int, keep: LabelFilter | None
) -> tuple[np.ndarray, np.ndarray]:
    """The shard's best m (fewer when it has fewer, or fewer that `keep` allows)."""
    if m <= 0:  # an empty shard (removals can empty one)
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    scores, labels = shard.search(query, m, params=None if keep is None else keep.params())
    found = labels[0] >= 0
    return scores[0][found], labels[0][found]


class ExactPrefilter:
    """The 8-bit copy of one exact sub-index (see the module docstring)."""

    def __init__(self, scale: np.ndarray) -> None:
        # code_j = round(x_j * scale_j), within [-127, 127]; the scan is given q_j / scale_j, so
        # its sums are q · x̂ with x̂_j = code_j / scale_j.
        self.scale = scale.astype(np.float32)
        dim = len(scale)
        self.max_error = 0.0  # E: the largest |x - x̂| of any vector encoded so far
        self.shards = [_new_shard(dim) for _ in range(SHARDS)]
        # label -> row of the float32 sub-index (-1: not there), for rescoring by a gather; made
        # again at the first search after a write (0.2 ms at 100,000 rows).
        self._row_of: np.ndarray | None = None

    @classmethod
    def build(cls, rows: np.ndarray, labels: np.ndarray) -> ExactPrefilter:
        """The copy of an exact sub-index's rows (unit-length float32) and their labels."""
        peak = np.abs(rows).max(axis=0) if len(rows) else np.ones(rows.shape[1], dtype=np.float32)
        prefilter = cls(127.0 / np.maximum(peak, 1e-6))
        half = len(rows) // 2
        for shard, (start, stop) in zip(prefilter.shards, ((0, half), (half, len(rows))), strict=True):
            prefilter._encode_into(shard, rows[start:stop], labels[start:stop])
        return prefilter

    @property
    def ntotal(self) -> int:
        return sum(int(shard.ntotal) for shard in self.shards)

    def fits(self, rows: np.ndarray) -> bool:
        """Whether new rows stay near the scale's range (else the copy should be rebuilt)."""
        return not len(rows) or float((np.abs(rows) * self.scale).max()) <= 127.0 * RANGE_HEADROOM

    def add(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """Encode new rows into the smaller shard."""
        smaller = min(self.shards, key=lambda shard: shard.ntotal)
        self._encode_into(smaller, rows, labels)
        self._row_of = None

    def remove(self, labels: Sequence[int]) -> None:
        array = np.asarray(labels, dtype=np.int64)
        for shard in self.shards:
            shard.remove_ids(faiss.IDSelectorBatch(array))
        self._row_of = None

    def _encode_into(self, shard: faiss.IndexIDMap, rows: np.ndarray, labels: np.ndarray) -> None:
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start : start + CHUNK_ROWS]
            codes = np.rint(chunk * self.scale)
            np.clip(codes, -127, 127, out=codes)
            codes = codes.astype(np.float32)  # whole numbers, which the 8-bit codec stores exactly
            error = np.linalg.norm(chunk - codes / self.scale, axis=1)
            self.max_error = max(self.max_error, float(error.max()))
            shard.add_with_ids(codes, np.ascontiguousarray(labels[start : start + CHUNK_ROWS], dtype=np.int64))

    def _rows_of(self, labels: np.ndarray) -> np.ndarray:
        if self._row_of is None:
            row_of = np.full(int(labels.max(initial=-1)) + 1, -1, dtype=np.int32)
            row_of[labels] = np.arange(len(labels), dtype=np.int32)
            self._row_of = row_of
        return self._row_of

    def search(
        self, rows: np.ndarray, labels: np.ndarray, query: np.ndarray, k: int, keep: LabelFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The exact top k of the float32 sub-index this copies.

        Args:
            rows: the sub-index's float32 rows (a view of its storage).
            labels: the label of each row, in the same order.
            query: a float32 vector (the index passes unit-length ones).
            k: how many to return (at most the sub-index's size).
            keep: when given, only labels it allows are returned (fewer than k when fewer remain).

        Returns:
            Float32 scores and int64 labels, best first; None when the candidates would pass
            `MAX_SHARE` of the rows before the top k is proven (the caller scans all of them).
        """
        # FAISS scans 8-bit codes with the query in whole numbers too (it truncates a float query),
        # so the query is put in whole numbers here: r = round(c · q / scale), c as large as the
        # byte range allows. A scan sum r · code / c is then q̃ · x̂ with q̃_j = r_j · scale_j / c.
        per_code = query / self.scale
        c = 127.0 / max(float(np.abs(per_code).max()), 1e-12)
        r = np.rint(per_code * c).astype(np.float32)
        q_error = float(np.linalg.norm(query - r * self.scale / c))
        # |q·x - q̃·x̂| <= |q|·|x - x̂| + |q - q̃|·|x̂| <= |q|·E + |q - q̃|·(1 + E)  (rows are unit length)
        bound = float(np.linalg.norm(query)) * self.max_error + q_error * (1.0 + self.max_error) + ROUNDING_SLACK
        q = r.reshape(1, -1)
        row_of = self._rows_of(labels)
        sizes = [int(shard.ntotal) for shard in self.shards]
        m = FIRST_PER_K * k + FIRST_EXTRA
        while m <= MAX_SHARE * sum(sizes):
            asked = [min(m, size) for size in sizes]
            far = _pool.get().submit(_search_shard, self.shards[1], q, asked[1], keep)
            found = [_search_shard(self.shards[0], q, asked[0], keep), far.result()]
            candidates = np.concatenate([lab for _, lab in found])
            # A shard that returned all it was asked for, and was asked for fewer than all its
            # rows, may have left some out: they score no higher than its last one. A shard that
            # returned fewer holds no other row the search may return.
            ceiling = max(
                (
                    float(scores[-1]) / c
                    for (scores, lab), n_asked, size in zip(found, asked, sizes, strict=True)
                    if n_asked < size and len(lab) == n_asked
                ),
                default=None,
            )
            if not len(candidates):
                return np.zeros(0, dtype=np.float32), candidates
            # einsum, not BLAS: BLAS threads left spinning would slow the next scan's two threads
            exact = np.einsum("ij,j->i", rows[row_of[candidates]], query)
            top = min(k, len(candidates))
            best = np.argpartition(-exact, top - 1)[:top] if top < len(candidates) else np.arange(len(candidates))
            best = best[np.argsort(-exact[best], kind="stable")]
            if ceiling is None or (top == k and float(exact[best[-1]]) > ceiling + bound):
                return exact[best].astype(np.float32), candidates[best]
            m *= GROWTH
        return None


__all__ = ["DEFAULT_PREFILTER_MIN", "ExactPrefilter"]
