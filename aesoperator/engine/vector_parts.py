"""FAISS sub-indexes of the vector index: one per namespace, exact or IVF, and the id maps.

A sub-index of up to `exact_max` vectors is an exact inner-product index (cosine, since rows are
unit length) behind an id map; a larger one is an inverted-file index (IVF, inner product) trained
on a sample of its own vectors, searched in `nprobe` of its lists. An IVF sub-index stores its
vectors as 8-bit scalar-quantised residuals (`sq8`: a byte per dimension, a quarter of float32;
at a million 384-dimensional vectors 0.38 GB instead of 1.5 GB) or as float32 (`flat`), by the
`vector_ivf_codes` setting. String entity ids map to int64 labels inside `VectorPartitions`.
Nothing here locks or touches disk: `VectorIndex` (vectors.py) locks, `vector_files.py` reads and
writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from aesoperator.engine.growable import GrowableColumn
from aesoperator.engine.text_codes import TextCodes
from aesoperator.engine.vector_filter import LabelFilter
from aesoperator.engine.vector_prefilter import DEFAULT_PREFILTER_MIN, ExactPrefilter
from aesoperator.errors import SchemaError

# Defaults of the `vector_exact_max` and `vector_nprobe` settings.
DEFAULT_EXACT_MAX = 100_000
DEFAULT_NPROBE = 64
# IVF shape: about 4·sqrt(n) lists, trained by k-means on a sample of this many points per list.
IVF_LISTS_PER_SQRT = 4
IVF_MIN_LISTS = 16
IVF_TRAIN_PER_LIST = 32
IVF_TRAIN_ITERATIONS = 10
IVF_SEED = 1234
# How an IVF sub-index stores its vectors (the `vector_ivf_codes` setting).
IVF_CODES = ("sq8", "flat")
DEFAULT_IVF_CODES = "sq8"
# The direct-map kind that supports `reconstruct` and removal by arbitrary int64 label.
HASHTABLE: int = faiss.DirectMap.Hashtable  # type: ignore[attr-defined]

# A sub-index: exact (`IndexIDMap2` over `IndexFlatIP`) or approximate (`IndexIVFScalarQuantizer`
# or `IndexIVFFlat`, carrying our int64 labels itself, with a hash-table direct map for
# `reconstruct` and removals).
Part = Any


def _new_part(dim: int) -> faiss.IndexIDMap2:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def is_ivf(part: Part) -> bool:
    """Whether a sub-index is approximate.

    Args:
        part: A sub-index.

    Returns:
        True for an IVF sub-index, False for an exact one.
    """
    return isinstance(part, faiss.IndexIVF)


def ivf_codes(part: Part) -> str | None:
    """How an IVF sub-index stores its vectors.

    Args:
        part: A sub-index.

    Returns:
        'sq8' or 'flat' for an IVF sub-index, None for an exact one.
    """
    if isinstance(part, faiss.IndexIVFScalarQuantizer):
        return "sq8"
    return "flat" if isinstance(part, faiss.IndexIVFFlat) else None


def part_kind(part: Part) -> str:
    """The kind of a sub-index, as the manifest and `VectorIndex.kinds` name it.

    Args:
        part: A sub-index.

    Returns:
        'ivf' for an approximate sub-index, 'flat' for an exact one.
    """
    return "ivf" if is_ivf(part) else "flat"


def part_labels(part: Part) -> np.ndarray:
    """The int64 labels a sub-index holds, in its storage order (the order of its ids file).

    Args:
        part: A sub-index.

    Returns:
        A one-dimensional int64 array, copied out of FAISS.
    """
    if not is_ivf(part):
        return faiss.vector_to_array(part.id_map)
    lists = part.invlists
    chunks = [
        faiss.rev_swig_ptr(lists.get_ids(i), size).copy() for i in range(part.nlist) if (size := lists.list_size(i)) > 0
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def flat_search(
    part: faiss.IndexIDMap2, query: np.ndarray, k: int, keep: LabelFilter | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top k of one query over an exact sub-index: (scores, labels), best first.

    One BLAS matrix-vector product over FAISS's own storage (a view, nothing copied) replaces
    FAISS's scan, which for a single query runs on one thread: at 100k vectors it is 2-3x faster
    on two cores. Scores equal FAISS's up to float rounding (the sums run in another order).

    Args:
        part: an exact sub-index (`IndexIDMap2` over `IndexFlatIP`).
        query: the query, a float32 vector of the sub-index's dimension.
        k: how many to return (at most the sub-index's size).
        keep: when given, only labels it allows are returned (fewer than k when fewer remain).

    Returns:
        Float32 scores and int64 labels of the k best, best first.
    """
    rows, labels = flat_view(part)
    scores = rows @ query
    if keep is not None:
        allowed = keep.allows(labels)
        scores = np.where(allowed, scores, -np.inf).astype(np.float32)
        k = min(k, int(allowed.sum()))
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    best = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    best = best[np.argsort(-scores[best], kind="stable")]
    return scores[best], labels[best]


def _remove_labels(part: Part, labels: Sequence[int]) -> None:
    array = np.asarray(labels, dtype=np.int64)
    if is_ivf(part):  # the hash-table direct map only accepts an explicit id array
        part.remove_ids(faiss.IDSelectorArray(len(array), faiss.swig_ptr(array)))
    else:
        part.remove_ids(faiss.IDSelectorBatch(array))


def ivf_lists(n: int) -> int:
    """How many inverted lists an IVF sub-index of `n` vectors gets.

    Args:
        n: The number of vectors.

    Returns:
        About 4·sqrt(n), at least `IVF_MIN_LISTS`.
    """
    return max(IVF_MIN_LISTS, int(IVF_LISTS_PER_SQRT * np.sqrt(max(n, 1))))


def _flat_rows(part: faiss.IndexIDMap2) -> np.ndarray:
    """The rows of an exact sub-index as a view of FAISS's own storage, nothing copied. Valid only
    while `part` is alive and not added to or removed from: callers keep a reference to it."""
    n = int(part.ntotal)
    flat: Any = faiss.downcast_index(part.index)  # IndexFlatIP, whose storage get_xb exposes
    rows: np.ndarray = faiss.rev_swig_ptr(flat.get_xb(), n * flat.d).reshape(n, flat.d)
    return rows


def flat_view(part: faiss.IndexIDMap2) -> tuple[np.ndarray, np.ndarray]:
    """An exact sub-index's rows and their labels, as views of FAISS's storage (nothing copied;
    valid while `part` is alive and unchanged)."""
    labels: np.ndarray = faiss.rev_swig_ptr(part.id_map.data(), int(part.ntotal))
    return _flat_rows(part), labels


def _new_ivf(quantizer: faiss.IndexFlatIP, dim: int, nlist: int, codes: str) -> faiss.IndexIVF:
    if codes == "flat":
        return faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    if codes != "sq8":
        raise SchemaError(f"IVF codes must be one of {', '.join(IVF_CODES)}, got {codes!r}")
    # Residuals from the list's centroid span a narrower range than the vectors themselves, so
    # their 8-bit codes lose less.
    return faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT, True
    )


def ivf_sample_positions(n: int) -> np.ndarray:
    """Which of `n` rows (by position) train an IVF sub-index over them: a fixed-seed sample of
    `IVF_TRAIN_PER_LIST` rows per list, sorted.

    Args:
        n: The number of rows the sub-index will hold.

    Returns:
        Sorted int64 positions below `n`.
    """
    nlist = min(ivf_lists(n), max(1, n))
    sample_size = min(n, nlist * IVF_TRAIN_PER_LIST)
    return np.sort(np.random.default_rng(IVF_SEED).choice(n, sample_size, replace=False))


def trained_ivf(sample: np.ndarray, n: int, dim: int, nprobe: int, codes: str) -> faiss.IndexIVF:
    """An empty IVF sub-index for `n` rows, its lists (and, for sq8, its quantiser's ranges)
    trained on `sample`.

    Args:
        sample: Unit-length float32 training rows (those `ivf_sample_positions(n)` picks).
        n: The number of rows it will hold, which sets the number of lists.
        dim: The dimension.
        nprobe: Lists a search probes.
        codes: 'sq8' or 'flat', how the vectors are stored.

    Returns:
        The trained sub-index, ready for `add_with_ids`.
    """
    nlist = min(ivf_lists(n), max(1, len(sample)))
    quantizer = faiss.IndexFlatIP(dim)
    index = _new_ivf(quantizer, dim, nlist, codes)
    index.cp.niter = IVF_TRAIN_ITERATIONS
    index.cp.seed = IVF_SEED
    index.cp.max_points_per_centroid = IVF_TRAIN_PER_LIST
    index.cp.min_points_per_centroid = 1  # small partitions train on fewer points per list
    index.train(sample)
    index.set_direct_map_type(HASHTABLE)
    index.nprobe = nprobe
    return index


def build_ivf(rows: np.ndarray, labels: np.ndarray, dim: int, nprobe: int, codes: str) -> faiss.IndexIVF:
    """An IVF sub-index over `rows`, trained on the fixed-seed sample `ivf_sample_positions` picks.

    Args:
        rows: Unit-length float32 rows.
        labels: Their int64 labels.
        dim: The dimension.
        nprobe: Lists a search probes.
        codes: 'sq8' or 'flat', how the vectors are stored.

    Returns:
        The trained, filled sub-index.
    """
    n = rows.shape[0]
    index = trained_ivf(rows[ivf_sample_positions(n)], n, dim, nprobe, codes)
    index.add_with_ids(rows, labels)
    return index


def as_matrix(vectors: Any, dim: int, what: str) -> np.ndarray:
    """A C-contiguous float32 copy with unit-length rows (zero rows stay zero).

    Args:
        vectors: One vector or a 2-d array-like of them.
        dim: The dimension the index holds.
        what: What the vectors are, for the error message.

    Returns:
        An (n, dim) float32 matrix, rows normalised to unit length.

    Raises:
        SchemaError: The shape does not match `dim`, or a value is NaN or infinite.
    """
    matrix = np.array(vectors, dtype=np.float32, copy=True, order="C")
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise SchemaError(f"{what} have shape {matrix.shape}; this index holds {dim}-dimensional vectors")
    if not np.isfinite(matrix).all():
        raise SchemaError(f"{what} contain NaN or infinite values")
    if matrix.shape[0]:
        faiss.normalize_L2(matrix)
    return matrix


@contextlib.contextmanager
def omp_threads(n: int) -> Iterator[None]:
    """Run FAISS on `n` OpenMP threads, then restore the previous count. The setting belongs to
    the calling thread, so concurrent searches in other threads are not disturbed.

    Args:
        n: The number of OpenMP threads inside the block.

    Returns:
        A context manager.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


@dataclass
class VectorPartitions:
    """The in-memory index: sub-indexes and the id maps. Not locked; VectorIndex locks.

    Labels are handed out densely from 0, so label -> id is a list and label -> namespace a numpy
    column of namespace codes: at a million vectors, dicts for both cost about 150 MB more.
    """

    dim: int
    exact_max: int = DEFAULT_EXACT_MAX
    nprobe: int = DEFAULT_NPROBE
    ivf_codes: str = DEFAULT_IVF_CODES
    prefilter_min: int = DEFAULT_PREFILTER_MIN  # 0: no 8-bit copies of exact sub-indexes
    parts: dict[str, Part] = field(default_factory=dict)
    # Namespace -> the 8-bit copy of its exact sub-index (derived; built at its second search).
    prefilters: dict[str, ExactPrefilter] = field(default_factory=dict)
    searched_once: set[str] = field(default_factory=set)  # large exact namespaces searched without a copy
    # prefix -> by label, whether its id starts with it (made at the first search leaving it out)
    prefix_flags: dict[str, GrowableColumn] = field(default_factory=dict)
    prefix_filters: dict[str, LabelFilter] = field(default_factory=dict)  # until the next new label
    int_of: dict[str, int] = field(default_factory=dict)
    id_at: list[str | None] = field(default_factory=list)  # label -> id; None once removed
    ns_at: GrowableColumn = field(default_factory=lambda: GrowableColumn(np.int32))  # label -> code
    ns_codes: TextCodes = field(default_factory=TextCodes)

    @property
    def next_int(self) -> int:
        """The label the next new id gets."""
        return len(self.id_at)

    def reserve(self, count: int) -> None:
        """Make labels below `count` free to place (a loaded index keeps its saved labels)."""
        self.prefix_flags.clear()  # made again from the ids once they are placed
        self.prefix_filters.clear()
        if count > len(self.id_at):
            self.ns_at.extend(np.full(count - len(self.id_at), -1, dtype=np.int32))
            self.id_at.extend([None] * (count - len(self.id_at)))

    def namespace_at(self, label: int) -> str:
        return self.ns_codes.text[int(self.ns_at.data[label])]

    def namespace_of(self, id_: str) -> str | None:
        label = self.int_of.get(id_)
        return None if label is None else self.namespace_at(label)

    def ids_at(self, labels: np.ndarray) -> list[str]:
        """The ids of live labels, in the order given.

        Raises:
            ValueError: a label was removed (a sub-index still holding it is out of step).
        """
        ids = [self.id_at[label] for label in labels.tolist()]
        if any(id_ is None for id_ in ids):
            raise ValueError("a sub-index holds a label whose id was removed")
        return [id_ for id_ in ids if id_ is not None]

    def place(self, labels: np.ndarray, ids: Sequence[str], ns: str) -> None:
        """Record loaded labels and their ids in namespace `ns`.

        Raises:
            ValueError: a label or id is placed twice, or a label is negative.
        """
        if len(labels) and int(labels.min()) < 0:
            raise ValueError(f"negative label {int(labels.min())}")
        self.reserve(int(labels.max()) + 1 if len(labels) else 0)
        for label, id_ in zip(labels.tolist(), ids, strict=True):
            if self.id_at[label] is not None or id_ in self.int_of:
                raise ValueError(f"id {id_!r} (label {label}) appears twice")
            self.id_at[label] = id_
            self.int_of[id_] = label
        self.ns_at.data[labels] = self.ns_codes.code(ns)

    def add(self, ids: Sequence[str], namespaces: Sequence[str], matrix: np.ndarray, promote: bool = True) -> set[str]:
        """Insert or replace; the last occurrence of a repeated id wins. Returns touched namespaces.

        With `promote`, a touched exact sub-index that now exceeds `exact_max` becomes an IVF one.
        """
        last_row: dict[str, int] = {}
        for row, id_ in enumerate(ids):
            last_row[id_] = row
        touched: set[str] = set()
        replaced = [id_ for id_ in last_row if id_ in self.int_of]
        touched |= self._drop(replaced, forget=False)
        by_ns: dict[str, tuple[list[int], list[int]]] = {}
        for id_, row in last_row.items():
            ns = namespaces[row]
            code = self.ns_codes.code(ns)
            int_id = self.int_of.get(id_)
            if int_id is None:
                int_id = self.int_of[id_] = len(self.id_at)
                self.id_at.append(id_)
                self.ns_at.append(code)
                for prefix, flags in self.prefix_flags.items():
                    flags.append(id_.startswith(prefix))
                self.prefix_filters.clear()
            else:
                self.ns_at.data[int_id] = code
            rows, ints = by_ns.setdefault(ns, ([], []))
            rows.append(row)
            ints.append(int_id)
        for ns, (rows, ints) in by_ns.items():
            part = self.parts.get(ns)
            if part is None:
                part = self.parts[ns] = _new_part(self.dim)
            added, labels = matrix[rows], np.asarray(ints, dtype=np.int64)
            part.add_with_ids(added, labels)
            prefilter = self.prefilters.get(ns)
            if prefilter is not None:
                if prefilter.fits(added):
                    prefilter.add(added, labels)
                else:  # values beyond its scale's range: rebuilt at the next search
                    del self.prefilters[ns]
            touched.add(ns)
        if promote:
            self.promote(touched)
        return touched

    def promote(self, namespaces: Sequence[str] | set[str] | None = None) -> None:
        """Turn exact sub-indexes larger than `exact_max` into IVF ones (all when None)."""
        for ns in sorted(self.parts if namespaces is None else namespaces):
            part = self.parts.get(ns)
            if part is not None and not is_ivf(part) and part.ntotal > self.exact_max:
                # The IVF index is built from a view of the exact one's rows: a copy would hold a
                # third set of the vectors at the peak (1.5 GB at a million).
                rows, labels = _flat_rows(part), part_labels(part)
                self.parts[ns] = build_ivf(rows, labels, self.dim, self.nprobe, self.ivf_codes)
                self.prefilters.pop(ns, None)

    def remove(self, ids: Sequence[str]) -> tuple[int, set[str]]:
        present = list(dict.fromkeys(id_ for id_ in ids if id_ in self.int_of))
        return len(present), self._drop(present, forget=True)

    def _drop(self, ids: Sequence[str], forget: bool) -> set[str]:
        by_ns: dict[str, list[int]] = {}
        for id_ in ids:
            label = self.int_of[id_]
            by_ns.setdefault(self.namespace_at(label), []).append(label)
            if forget:
                del self.int_of[id_]
                self.id_at[label] = None
        for ns, ints in by_ns.items():
            part = self.parts[ns]
            _remove_labels(part, ints)
            if ns in self.prefilters:
                self.prefilters[ns].remove(ints)
            if part.ntotal == 0:
                del self.parts[ns]
                self.prefilters.pop(ns, None)
        return set(by_ns)

    def without_prefix(self, prefix: str) -> LabelFilter:
        """The filter that leaves out every id starting with `prefix`."""
        made = self.prefix_filters.get(prefix)
        if made is not None:
            return made
        flags = self.prefix_flags.get(prefix)
        if flags is None:
            starts = np.fromiter(
                (id_ is not None and id_.startswith(prefix) for id_ in self.id_at), dtype=bool, count=len(self.id_at)
            )
            flags = self.prefix_flags[prefix] = GrowableColumn(np.bool_, starts)
        made = self.prefix_filters[prefix] = LabelFilter(~flags.view())
        return made

    def selected(self, namespaces: Sequence[str] | None) -> list[tuple[str, Part]]:
        """The (namespace, sub-index) pairs a search covers: all non-empty ones when None."""
        if namespaces is None:
            return [(ns, part) for ns, part in self.parts.items() if part.ntotal]
        return [(ns, self.parts[ns]) for ns in dict.fromkeys(namespaces) if ns in self.parts]

    def exact_top(
        self, ns: str, part: Part, query: np.ndarray, k: int, keep: LabelFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The exact top k of one query over the exact sub-index of `ns`: from its 8-bit copy
        when it is large enough (`prefilter_min`) and the copy proves its answer, else from the
        float32 product. Both give the same labels; scores agree up to float rounding.

        The copy is built at the sub-index's second search, not its first: a one-shot process
        (`aesop search`) would spend more building it (0.2 s at 100,000 vectors) than it saves."""
        n = int(part.ntotal)
        if self.prefilter_min and n >= self.prefilter_min:
            rows, labels = flat_view(part)
            prefilter = self.prefilters.get(ns)
            if prefilter is None or prefilter.ntotal != n:
                if ns not in self.searched_once:
                    self.searched_once.add(ns)
                    return flat_search(part, query, k, keep)
                prefilter = self.prefilters[ns] = ExactPrefilter.build(rows, labels)
            found = prefilter.search(rows, labels, query, min(k, n), keep)
            if found is not None:
                return found
        return flat_search(part, query, k, keep)

    def merge(self, scores: list[np.ndarray], labels: list[np.ndarray], k: int) -> list[tuple[str, float]]:
        hits: list[tuple[str, float]] = []
        id_at = self.id_at
        for score_row, label_row in zip(scores, labels, strict=True):
            for score, label in zip(score_row.tolist(), label_row.tolist(), strict=True):
                # -1 pads a short result; a removed label is gone from its sub-index too
                if label >= 0 and (id_ := id_at[label]) is not None:
                    hits.append((id_, score))
        hits.sort(key=lambda hit: (-hit[1], hit[0]))
        return hits[:k]
