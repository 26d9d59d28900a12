"""Index candidates from the statements' predicates (pure): keys.py builds each statement's
key per table, generate.py merges them per table and leaves out what needs no index."""

from __future__ import annotations

from analyzer.recommend.candidates.generate import (
    MIN_TABLE_BYTES,
    MIN_TABLE_ROWS,
    covering_index,
    dropped_columns,
    generate,
    table_info,
    too_small,
)
from analyzer.recommend.candidates.keys import MAX_COLUMNS, MIN_DISTINCT, ColumnStats, normalize

__all__ = ["MAX_COLUMNS", "MIN_DISTINCT", "MIN_TABLE_BYTES", "MIN_TABLE_ROWS", "ColumnStats",
           "covering_index", "dropped_columns", "generate", "normalize", "table_info",
           "too_small"]
