"""Grouping regressions by common cause with scikit-learn.

Each regression becomes a vector of blocks: the tables it touches, the columns of its
predicates / joins / ORDER BY, the scans of its current plan, the predicate columns that no
valid index leads (one-hot, each block scaled to unit length and weighted), and the timing
and size of its change (when it started within the current window, how many times slower).
Regressions are then linked when they lie within ``distance`` of each other (DBSCAN with
``min_samples=1``, i.e. single linkage cut at a fixed radius): deterministic by construction,
independent of input order, no randomness involved. Identical vectors are collapsed before
fitting, so thousands of regressions of a few causes cost little.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from sklearn.cluster import DBSCAN

# A predicate column that no index leads any more is the strongest sign of a shared cause; the
# plan's scan nodes differ between statements that lost the same index (one falls back to a
# sequential scan, another to some other index), so they weigh less.
BLOCK_WEIGHTS: Mapping[str, float] = {"table": 1.0, "column": 0.5, "plan": 0.5,
                                      "unindexed": 1.0}
ONSET_WEIGHT = 0.5
MAGNITUDE_WEIGHT = 0.3


@dataclass(frozen=True)
class ClusterInput:
    """One regression as clustering sees it."""

    key: str  # stable identity, for deterministic ordering
    tokens: Mapping[str, Sequence[str]]  # block -> categorical features
    onset: float = 1.0  # when the change started, as a fraction of the current window
    ratio: float = 1.0  # current mean / baseline mean


@dataclass
class ClusteringModel:
    """Fits cluster labels; fitted attributes end in an underscore (scikit-learn style)."""

    distance: float = 0.9
    vocabulary_: dict[str, dict[str, int]] = field(default_factory=dict)
    labels_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def features(self, items: Sequence[ClusterInput]) -> sparse.csr_matrix:
        """The feature matrix of `items` (fits the vocabulary)."""
        self.vocabulary_ = {}
        for block in BLOCK_WEIGHTS:
            tokens = sorted({t for it in items for t in it.tokens.get(block, ())})
            self.vocabulary_[block] = {t: i for i, t in enumerate(tokens)}
        offsets, width = {}, 0
        for block, vocab in self.vocabulary_.items():
            offsets[block] = width
            width += len(vocab)
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for r, it in enumerate(items):
            for block, weight in BLOCK_WEIGHTS.items():
                present = sorted({self.vocabulary_[block][t] for t in it.tokens.get(block, ())})
                for c in present:
                    rows.append(r)
                    cols.append(offsets[block] + c)
                    vals.append(weight / math.sqrt(len(present)))
            rows += [r, r]
            cols += [width, width + 1]
            vals += [ONSET_WEIGHT * min(max(it.onset, 0.0), 1.0),
                     MAGNITUDE_WEIGHT * min(max(math.log10(max(it.ratio, 1.0)), 0.0), 3.0) / 3]
        return sparse.csr_matrix((vals, (rows, cols)), shape=(len(items), width + 2))

    def fit(self, items: Sequence[ClusterInput]) -> ClusteringModel:
        """Cluster `items`; labels_ are numbered by cluster size, then by smallest key."""
        n = len(items)
        if n == 0:
            self.labels_ = np.zeros(0, dtype=int)
            return self
        matrix = self.features(items)
        raw = np.empty(n, dtype=int)
        offset = 0
        for part in self._partitions(items):
            labels = _fit_unique(matrix[part], self.distance)
            raw[part] = labels + offset
            offset += int(labels.max()) + 1
        self.labels_ = _canonical(raw, [it.key for it in items])
        return self

    def _partitions(self, items: Sequence[ClusterInput]) -> list[np.ndarray]:
        """Groups of items that can be clustered apart without changing the result.

        Two items without a common table are at least the table weight apart (their table
        blocks are orthogonal or one is empty), so below that radius they are never linked:
        items are split into components of shared tables, and each fitted alone. That keeps
        the pairwise work near-linear for a fleet of many tables.
        """
        n = len(items)
        if self.distance >= BLOCK_WEIGHTS["table"]:
            return [np.arange(n)]
        parent = list(range(n))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        owner: dict[str, int] = {}
        for i, it in enumerate(items):
            # Items without tables all share the empty table block: one component.
            for table in it.tokens.get("table", ()) or ("",):
                if table in owner:
                    parent[find(i)] = find(owner[table])
                else:
                    owner[table] = i
        groups: dict[int, list[int]] = {}
        for i in range(n):
            groups.setdefault(find(i), []).append(i)
        return [np.array(g) for g in sorted(groups.values(), key=lambda g: g[0])]


def _fit_unique(matrix: sparse.csr_matrix, distance: float) -> np.ndarray:
    """DBSCAN labels (min_samples=1) fitted on the distinct rows only, mapped back to all."""
    unique: dict[tuple[float, ...], int] = {}
    inverse = np.empty(matrix.shape[0], dtype=int)
    for i, k in enumerate(_row_keys(matrix)):
        inverse[i] = unique.setdefault(k, len(unique))
    if len(unique) == 1:
        return np.zeros(matrix.shape[0], dtype=int)
    first = np.zeros(len(unique), dtype=int)
    for i in range(matrix.shape[0] - 1, -1, -1):
        first[inverse[i]] = i
    labels = DBSCAN(eps=distance, min_samples=1).fit(matrix[first]).labels_
    return np.asarray(labels, dtype=int)[inverse]


def _row_keys(matrix: sparse.csr_matrix) -> list[tuple[float, ...]]:
    m = matrix.tocsr()
    m.sort_indices()
    out = []
    for i in range(m.shape[0]):
        start, end = m.indptr[i], m.indptr[i + 1]
        out.append(tuple(m.indices[start:end].tolist())
                   + tuple(np.round(m.data[start:end], 9).tolist()))
    return out


def _canonical(raw: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    """Renumber labels: biggest cluster first, ties by their smallest member key."""
    members: dict[int, list[str]] = {}
    for label, key in zip(raw.tolist(), keys, strict=True):
        members.setdefault(label, []).append(key)
    order = sorted(members, key=lambda lab: (-len(members[lab]), min(members[lab])))
    mapping = {lab: i for i, lab in enumerate(order)}
    return np.array([mapping[lab] for lab in raw.tolist()], dtype=int)


def cluster(items: Sequence[ClusterInput], distance: float = 0.9) -> list[int]:
    """Cluster ids for `items` (0 is the biggest cluster)."""
    return [int(x) for x in ClusteringModel(distance=distance).fit(items).labels_]
