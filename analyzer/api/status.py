"""Recommendation status changes made through the API (the lifecycle of docs/analyzer.md).

This is the swap point for the shared lifecycle module: ``allowed`` and ``change_status``
are all the API uses, so the lifecycle can move elsewhere without touching the handlers.
"""

from __future__ import annotations

# from -> the statuses it may move to (people and the analyzer together).
TRANSITIONS: dict[str, frozenset[str]] = {
    "proposed": frozenset({"accepted", "rejected", "applied"}),
    "accepted": frozenset({"applied"}),
    "applied": frozenset({"verified", "ineffective", "reverted"}),
    "verified": frozenset({"reverted"}),
    "ineffective": frozenset({"reverted"}),
    "rejected": frozenset(),
    "reverted": frozenset(),
}
# What a person may set; verified and ineffective are measured by audits.
PERSON_STATUSES = ("accepted", "rejected", "applied", "reverted")


def allowed(current: str, new: str) -> bool:
    """Whether a recommendation may move from `current` to `new`."""
    return new in TRANSITIONS.get(current, frozenset())
