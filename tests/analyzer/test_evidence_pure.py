"""Benefit, confidence, representative parameters and workload selection, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

from analyzer.advise.logs import read_log
from analyzer.analysis.causes import Cause
from analyzer.audit.steps.recommend import dropped_indexes
from analyzer.audit.values import Cluster
from analyzer.recommend import evidence, parameters, selection
from analyzer.recommend.model import MeasuredChange, StatementCost, StatementEvidence


def _st(query: str, total_ms: float = 1000.0, calls: int = 100, rows: int = 300,
        qid: int = 1) -> StatementEvidence:
    return StatementEvidence(1, (qid,), f"fp:{query}:{qid}", query, calls, total_ms,
                             total_ms / calls, rows)


def test_benefit_is_time_per_day_and_confidence_follows_the_evidence() -> None:
    s = _st("SELECT 1 FROM t WHERE a = $1", total_ms=600.0)
    # The window is an hour: 600 ms an hour is 14,400 ms a day; the plans save 90 %.
    custom = [evidence.Saving(s, (0.9, 0.95, 0.85), "custom_plan")]
    j = evidence.judge(custom, 3600.0, write_ms=0.0)
    assert j.evidence_kind == "custom_plan" and j.confidence >= 0.9
    assert abs(j.saved_ms_per_day - 14_400 * 0.9) < 1e-6
    assert j.spread == {"min": 0.85, "median": 0.9, "max": 0.95}
    # Inconsistent over the samples: one in three saves half or more.
    mixed = evidence.judge([evidence.Saving(s, (0.9, 0.1, 0.0), "custom_plan")], 3600.0, 0.0)
    assert mixed.confidence < 0.8
    generic = evidence.judge([evidence.Saving(s, (0.9,), "generic_plan")], 3600.0, 0.0)
    assert generic.evidence_kind == "generic_plan" and generic.confidence < j.confidence
    # The measured history: 0.06 -> 21 ms per call, p = 1e-12.
    m = MeasuredChange((1,), 0.06, 21.0, 100, 1e-12)
    hist = evidence.judge(evidence.from_history([s], [m]), 3600.0, 0.0, [m])
    assert hist.evidence_kind == "measured_history" and hist.confidence > 0.99
    assert abs(hist.saved_ms_per_day - 14_400 * (1 - 0.06 / 21.0)) < 1e-6


def test_write_cost_is_time_from_the_statements_own_ms_per_unit() -> None:
    s = _st("SELECT 1 FROM t WHERE a = $1", total_ms=1000.0, calls=100)  # 10 ms a call
    cost = StatementCost(1, before=1000.0, after=10.0)  # 0.01 ms per planner unit
    assert evidence.write_ms_per_day(0.0, [(s, cost)]) == 0.0
    assert abs(evidence.write_ms_per_day(1000.0, [(s, cost)]) - 1000 * 10 * 0.01) < 1e-9
    heavy = evidence.judge(evidence.from_plans([(s, cost)]), 86400.0,
                           evidence.write_ms_per_day(100_000.0, [(s, cost)]))
    assert heavy.benefit_ms_per_day < 0


def test_selection_keeps_one_of_two_indexes_serving_the_same_statements() -> None:
    a = _st("SELECT 1 FROM t WHERE a = $1", total_ms=5000.0, qid=1)
    b = _st("SELECT 1 FROM t WHERE a = $1 AND b = $2", total_ms=5000.0, qid=2)
    # Option 0 serves both statements, option 1 (its prefix) only the first.
    alone = {0: [evidence.Saving(a, (0.9,), "custom_plan"),
                 evidence.Saving(b, (0.95,), "custom_plan")],
             1: [evidence.Saving(a, (0.9,), "custom_plan")]}

    def evaluate(keys: frozenset[int]) -> list[evidence.Saving]:
        return evidence.combine([alone[k] for k in keys])

    options = [selection.Option(0, "public.t", 0.0, 2000), selection.Option(1, "public.t", 0.0,
                                                                            1000)]
    chosen = selection.select(options, evaluate, 86400.0, 100.0)
    assert chosen.chosen == (0,) and chosen.served_by == {1: (0,)}
    # The greedy path (many candidates) comes to the same answer.
    many = [*options, *(selection.Option(k, "public.t", 0.0, 10) for k in (2, 3))]
    alone.update({2: [], 3: []})
    greedy = selection.select(many, evaluate, 86400.0, 100.0)
    assert greedy.chosen == (0,)
    # Candidates on different tables do not compete.
    other = [*options, selection.Option(2, "public.u", 0.0, 10)]
    alone[2] = [evidence.Saving(_st("SELECT 1 FROM u WHERE c = $1", qid=3), (0.9,),
                                "generic_plan")]
    assert selection.select(other, evaluate, 86400.0, 100.0).chosen == (0, 2)


def test_parameters_bind_to_columns_and_come_from_the_sources() -> None:
    q = ("SELECT count(*) FROM orders o WHERE o.status = $1 AND created_at > $2 "
         "ORDER BY id LIMIT $3")
    bound = parameters.bindings(q, {"orders": "public.orders"})
    assert (bound[1].table, bound[1].column, bound[1].role) == ("public.orders", "status",
                                                                  "equality")
    assert (bound[2].column, bound[2].op, bound[2].role) == ("created_at", ">", "range")
    assert bound[3].role == "limit"
    flipped = parameters.bindings("SELECT 1 FROM t WHERE $1 < a", {"t": "public.t"})
    assert flipped[1].op == ">"
    s = _st(q, calls=100, rows=2000, qid=7)
    stats = parameters.Sources(columns={
        ("public.orders", "status"): parameters.ColumnValues(("new", "paid"), ()),
        ("public.orders", "created_at"): parameters.ColumnValues(
            (), tuple(f"2026-01-{d:02d}" for d in range(1, 31)))})
    from_stats = parameters.samples(s, bound, stats)
    assert from_stats.custom and from_stats.source == "pg_stats"
    assert len(from_stats.values) == 3 and {v[0] for v in from_stats.values} <= {"new", "paid"}
    assert {v[2] for v in from_stats.values} == {"20"}  # LIMIT: the measured rows per call
    qual = parameters.Sources(
        qualstats={(7, "public.orders", "created_at", ">"): ("2026-12-03 10:00:00+00",)},
        columns=stats.columns)
    recent = parameters.samples(s, bound, qual)
    assert recent.source == "pg_qualstats" and recent.values[0][1] == "2026-12-03 10:00:00+00"
    unknown = parameters.samples(s, bound, parameters.Sources())
    assert not unknown.custom and unknown.unknown_range and unknown.unknown == (1, 2)
    assert parameters.samples(_st("SELECT 1"), {}, parameters.Sources()).values == ((),)


def test_bind_parameters_from_the_servers_jsonlog() -> None:
    import json

    q = "SELECT id FROM ev WHERE created_at > $1 AND kind = $2"
    lines = [json.dumps({"error_severity": "LOG",
                         "message": f"duration: 0.5{n} ms  execute <unnamed>: {q}",
                         "detail": f"Parameters: $1 = '2026-12-03 10:0{n}:00+00', $2 = 'it''s'"})
             for n in range(4)]
    lines += [json.dumps({"error_severity": "LOG", "message": f"execute S_1: {q}",
                          "detail": "Parameters: $1 = '2026-12-03...', $2 = 'x'"}),  # cut
              json.dumps({"error_severity": "LOG",
                          "message": "duration: 1 ms  statement: SELECT 1"})]
    logged = parameters.logged_values((e.text, e.values) for e in read_log("\n".join(lines)))
    (values,) = logged.values()
    assert len(values) == 3 and values[0] == ("2026-12-03 10:00:00+00", "it's")
    s = _st(q.replace("$1", "$1 "), qid=9)  # the same statement as the log's, by fingerprint
    got = parameters.samples(s, parameters.bindings(s.query), parameters.Sources(logged=logged))
    assert got.source == "server_log" and got.custom and got.values == values


def test_an_index_named_by_several_clusters_comes_back_once() -> None:
    at = datetime(2026, 12, 3, tzinfo=UTC)
    definition = "CREATE INDEX o_c ON public.orders USING btree (customer_id)"
    cause = Cause("index_dropped", "public.o_c", at, definition, "public.orders")
    clusters = [Cluster(i, (), (str(q),), ("public.orders",), "", cause=cause)
                for i, q in enumerate((11, 12, 11))]
    other = Cause("index_dropped", "public.e_s", at, "CREATE INDEX e_s ON public.e (s)",
                  "public.e")
    clusters.append(Cluster(3, (), ("13",), ("public.e",), "", cause=other))
    found = dropped_indexes(clusters)
    assert [(d.name, d.queryids) for d in found] == [("public.o_c", (11, 12)),
                                                     ("public.e_s", (13,))]
