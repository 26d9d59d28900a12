"""Recommendation status changes made through the API: the lifecycle of analyzer.lifecycle,
as a person (actor ``api``) may use it."""

from __future__ import annotations

from analyzer.lifecycle import PERSON_STATUSES, TRANSITIONS

__all__ = ["PERSON_STATUSES", "TRANSITIONS", "allowed"]


def allowed(current: str, new: str) -> bool:
    """Whether a person may move a recommendation from `current` to `new` through the API."""
    from analyzer.lifecycle import allowed as lifecycle_allowed

    return lifecycle_allowed(current, new, "api")
