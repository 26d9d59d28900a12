"""ORM-path latency per phase of the demo: differences of the histograms' buckets between two
moments, and the table the story prints for a phase."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from pgarchitect.demo.refapp.traffic import HISTOGRAM, histogram_quantile
from pgarchitect.table import render_table

TARGET_SECONDS = 0.05  # the ORM paths' p95 target

FOOTNOTE = (
    "     SDK: statements the app's driver hooks timed (client side: one per query the app\n"
    "     sent). jsonlog: statements the server logged for the path's application_name\n"
    "     (server side, transaction control such as BEGIN/COMMIT included). p95 from the\n"
    "     buckets of this phase only, as histogram_quantile computes it.")

Buckets = dict[str, dict[float, float]]


def buckets(registry: CollectorRegistry) -> Buckets:
    """Cumulative pg_orm_query_duration_seconds buckets per orm_path (summed over labels)."""
    out: Buckets = {}
    for family in registry.collect():
        if family.name != HISTOGRAM:
            continue
        for s in family.samples:
            if s.name == HISTOGRAM + "_bucket":
                per_le = out.setdefault(s.labels["orm_path"], {})
                le = float(s.labels["le"])
                per_le[le] = per_le.get(le, 0.0) + s.value
    return out


@dataclass(frozen=True)
class PathFigures:
    """One ORM path in one phase: statements observed, p95, share within the target."""

    count: int
    p95: float | None
    within: float | None


def figures(before: Buckets, after: Buckets) -> dict[str, PathFigures]:
    """Per orm_path, what happened between two bucket readings."""
    out = {}
    for path, per_le in after.items():
        old = before.get(path, {})
        cumulative = sorted((le, n - old.get(le, 0.0)) for le, n in per_le.items())
        total = cumulative[-1][1] if cumulative else 0.0
        within = dict(cumulative).get(TARGET_SECONDS, 0.0)
        out[path] = PathFigures(int(total), histogram_quantile(0.95, cumulative),
                                within / total if total else None)
    return out


@dataclass(frozen=True)
class Phase:
    """The figures of one traffic phase, from the SDK and from the server's jsonlog."""

    sdk: dict[str, PathFigures]
    jsonlog: dict[str, PathFigures]
    requests: int

    def over_target(self) -> list[str]:
        """The paths whose p95 (SDK) is over the target."""
        return sorted(p for p, f in self.sdk.items()
                      if f.p95 is not None and f.p95 > TARGET_SECONDS)

    def table(self) -> str:
        """The ORM-path table of the phase (SDK next to the server's jsonlog)."""
        def ms(p: PathFigures | None) -> str:
            return "-" if p is None or p.p95 is None else f"{p.p95 * 1000:.1f}"

        def ratio(p: PathFigures | None) -> str:
            return "-" if p is None or p.within is None else f"{p.within:.1%}"

        rows = []
        for path in sorted(set(self.sdk) | set(self.jsonlog)):
            s, j = self.sdk.get(path), self.jsonlog.get(path)
            verdict = "-" if s is None or s.p95 is None else (
                "within target" if s.p95 <= TARGET_SECONDS else "OVER TARGET")
            rows.append((path, s.count if s else 0, ms(s), ratio(s), j.count if j else 0, ms(j),
                         verdict))
        return render_table(["orm_path", "SDK statements", "SDK p95 ms", "SDK <= 50 ms",
                             "jsonlog statements", "jsonlog p95 ms", "p95 vs 50 ms"], rows)
