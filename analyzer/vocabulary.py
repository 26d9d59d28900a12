"""The analyzer's closed sets of words: statuses, kinds, causes, modes, evidence.

Each is a `StrEnum` whose values are the strings the store's CHECK constraints, the report and
the API use (migrations/, docs/report.md), so a member compares equal to its string, and JSON
and SQL parameters built from members are unchanged. A new word is added here first; the
migrations that constrain the column follow.
"""

from __future__ import annotations

from enum import StrEnum


class RecommendationStatus(StrEnum):
    """A recommendation's place in its lifecycle (analyzer/lifecycle.py has the transitions)."""

    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    APPLIED = "applied"
    VERIFIED = "verified"
    INEFFECTIVE = "ineffective"
    REVERTED = "reverted"



class AuditStatus(StrEnum):
    """An audit run's state (pgarchitect.audit_run.status)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class VerificationStatus(StrEnum):
    """What measuring an applied recommendation found."""

    VERIFIED = "verified"
    INEFFECTIVE = "ineffective"
    PENDING = "pending"  # not enough calls since it was applied


class RecommendationKind(StrEnum):
    """What a recommendation proposes (pgarchitect.optimization_log.kind)."""

    CREATE_INDEX = "create_index"
    DROP_INDEX = "drop_index"
    ANALYZE = "analyze"
    VACUUM = "vacuum"
    N_PLUS_ONE = "n_plus_one"
    WORK_MEM = "work_mem"
    REWRITE = "rewrite"



class CauseKind(StrEnum):
    """Why a cluster regressed, as the catalog shows it (analyzer/analysis/causes.py)."""

    INDEX_DROPPED = "index_dropped"
    INDEX_CREATED = "index_created"
    INDEX_INVALID = "index_invalid"
    ANALYZED = "analyzed"
    STALE_STATISTICS = "stale_statistics"
    SETTING_CHANGED = "setting_changed"
    STATS_RESET = "stats_reset"
    LOAD = "load"


class ValidationMode(StrEnum):
    """How index candidates are checked (`analyzer.validation.mode`)."""

    AUTO = "auto"
    HYPOPG = "hypopg"
    SANDBOX = "sandbox"
    TRANSACTION = "transaction"
    OFF = "off"


class ValidatedBy(StrEnum):
    """How a stored recommendation was checked (pgarchitect.optimization_log.validated_by)."""

    HYPOPG = "hypopg"
    SANDBOX = "sandbox"
    TRANSACTION = "transaction"
    NONE = "none"


class EvidenceKind(StrEnum):
    """Where a statement's figures in a recommendation's evidence come from."""

    MEASURED_HISTORY = "measured_history"
    CUSTOM_PLAN = "custom_plan"
    GENERIC_PLAN = "generic_plan"
    CATALOG = "catalog"


class Actor(StrEnum):
    """Who changed a recommendation's status."""

    ANALYZER = "analyzer"
    API = "api"
    CLI = "cli"


class RequestedBy(StrEnum):
    """Who asked for an audit (pgarchitect.audit_run.requested_by)."""

    CLI = "cli"
    API = "api"
    SCHEDULE = "schedule"
