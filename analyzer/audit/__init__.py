"""One audit as a sequence of steps, each taking values and returning values.

`workflow.run_audit` is the only place that wires the steps; it reads top to bottom as the
workflow (docs/architecture.md, "Audit step pipeline"): snapshot → applied / reverted
recommendations seen in its catalog → window statistics → regression detection → plan analysis
→ clustering → causes → recommendations (validated on the held target session) → memory
(repeats merged, rejected ones lowered, ineffective ones refused) → verification of applied
ones → store, the last three in one transaction. Every step receives frozen values
(`values`) and returns a frozen value; none writes into a structure another step reads. A
step reads the target or the store at its edges (first the I/O, then the pure analysis in
`analyzer.analysis`), so adding a step is one new function in `steps/` and one line in
`run_audit`.

The audit is recorded as 'running' first (so a crash leaves a trace) and ends either
'succeeded' with all its results written in one transaction, or 'failed' with the error
(`bookkeeping`); a failure never leaves partial results. Regressions and clusters are
serialised once (`records`), for both the report and the store rows.
"""

from analyzer.audit.bookkeeping import AuditBusy, AuditFailed
from analyzer.audit.records import cluster_record, regression_record, windows_record
from analyzer.audit.steps.recommend import engine_recommender, window_writes
from analyzer.audit.steps.snapshot import Observed, observe_applied, snapshot_and_observe
from analyzer.audit.steps.statistics import window_stats
from analyzer.audit.values import (
    STEPS,
    AuditResult,
    Cluster,
    Clustering,
    Detection,
    PlanAnalysis,
    QuickCheck,
    RecommendationInput,
    Recommender,
    Step,
    StepHook,
    WindowStatistics,
)
from analyzer.audit.workflow import detect, quick_check, run_audit, run_quick_check

__all__ = [
    "STEPS", "AuditBusy", "AuditFailed", "AuditResult", "Cluster", "Clustering", "Detection",
    "Observed", "PlanAnalysis", "QuickCheck", "RecommendationInput", "Recommender", "Step",
    "StepHook", "WindowStatistics", "cluster_record", "detect", "engine_recommender",
    "observe_applied", "quick_check", "regression_record", "run_audit", "run_quick_check",
    "snapshot_and_observe", "window_stats", "window_writes", "windows_record",
]
