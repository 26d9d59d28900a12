"""The values predicate reading produces: what one statement asks of each table."""

from __future__ import annotations

from dataclasses import dataclass

# Roles a term plays in an index key (or next to it).
#   equality, in, range, join, sort: btree key columns (range includes LIKE 'prefix%');
#   gin: a GIN key (jsonb @> ?, array @> && <@, tsvector @@; trigram when opclass says so);
#   partial: a constant predicate of the statement, a partial index's WHERE (`text` holds it).
ROLES = ("equality", "in", "range", "join", "sort", "gin", "partial")


@dataclass(frozen=True)
class Term:
    """One column (or indexable expression of one column) a predicate uses."""

    table: str  # as written or resolved (schema.table where known)
    text: str  # as PostgreSQL prints it: `customer_id`, `"Customer"`, `lower(email)`
    column: str  # the bare column underneath
    role: str  # one of ROLES
    descending: bool = False
    expression: bool = False
    opclass: str | None = None  # text_pattern_ops, gin_trgm_ops, jsonb_path_ops, ...
    method: str = "btree"  # btree | gin
    # Which reference to the table the term is about (each FROM entry, UNION branch, subquery
    # or view use is a scan of its own): terms of different scans never share an index key.
    scan: int = 0


@dataclass(frozen=True)
class Wrapped:
    """A column hidden from its indexes by what surrounds it (`created_at::date = $1`)."""

    table: str
    column: str
    how: str  # cast | arithmetic | function


@dataclass(frozen=True)
class Unhandled:
    """A predicate shape no candidate is made for, and why (the report says so)."""

    table: str | None  # the base table it is about, where known
    shape: str  # or | operator | null_test | like_parameter | no_trigram | ...
    detail: str


@dataclass(frozen=True)
class Access:
    """Everything one statement asks of its tables."""

    terms: tuple[Term, ...] = ()
    wrapped: tuple[Wrapped, ...] = ()
    tables: tuple[str, ...] = ()
    parsed: bool = False
    unhandled: tuple[Unhandled, ...] = ()
