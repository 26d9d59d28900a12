"""Ask benchmarks (docs/ask.md): embedding throughput of all-MiniLM-L6-v2 (int8 ONNX) against
the hashing embedder, retrieval latency with 10,000 stored knowledge rows (HNSW) against an
exact scan of the same rows, and the answer time end to end in `retrieval` mode against the
guarded run of the same SQL alone. Figures go to docs/benchmarks.md (section `ask`)."""

from __future__ import annotations

import statistics
import time

import numpy as np

from analyzer.ask import guard, knowledge
from analyzer.ask.answer import ask
from analyzer.minilm import shared
from analyzer.store import ask as ask_store
from analyzer.store.connection import Conn, connect_store
from bench.report import median_seconds, write_section
from pgarchitect.config import load_settings
from pgarchitect.demo.embedded import embedded_postgres
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate

STORED = 10_000


def _texts(n: int) -> list[str]:
    examples, _, _ = knowledge.curated()
    questions = [q for e in examples for q in e.questions]
    return [f"{questions[i % len(questions)]} ({i})" for i in range(n)]


def bench_embedding() -> tuple[float, float]:
    """Texts per second: MiniLM, hashing."""
    texts = _texts(600)
    minilm, hashing = shared(), knowledge.HashingTextEmbedder()
    minilm.embed_texts(texts[:32])
    t_minilm = median_seconds(lambda: minilm.embed_texts(texts), runs=3)
    t_hash = median_seconds(lambda: hashing.embed_texts(texts), runs=3)
    return len(texts) / t_minilm, len(texts) / t_hash


def _fill(conn: Conn, rng: np.random.Generator) -> np.ndarray:
    """10,000 knowledge rows near the curated questions (their MiniLM vectors plus noise)."""
    base = shared().embed_texts(_texts(200))
    vectors = base[rng.integers(0, len(base), STORED)] + rng.normal(0, 0.03, (STORED, 384))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO pgarchitect.ask_knowledge (kind, source, scope, key, question, sql,"
            " body, embedding, model) VALUES ('example', 'operator', 'store', %s, %s,"
            " 'SELECT 1', %s, %s, %s)",
            [(f"bench {i}", f"bench {i}", f"bench {i}", v.astype(np.float32),
              shared().name) for i, v in enumerate(vectors)])
    return base


def main() -> None:
    minilm_rate, hash_rate = bench_embedding()
    rng = np.random.default_rng(0)
    with embedded_postgres(18) as pg:
        store = pg.create_database("askbench")
        migrate(Dsn(store))
        settings = load_settings(None, {"store": {"dsn": store}})
        with connect_store(Dsn(store)) as conn:
            knowledge.sync(conn, shared())
            base = _fill(conn, rng)
            conn.execute("ANALYZE pgarchitect.ask_knowledge")
            queries = base[:50]
            hnsw = [median_seconds(lambda q=q: ask_store.nearest(
                conn, q, ["example"], ["store"], 12), runs=3) for q in queries]
            found = [{h.id for h in ask_store.nearest(conn, q, ["example"], ["store"], 12)}
                     for q in queries]
            conn.execute("SET enable_indexscan = off")
            exact = [median_seconds(lambda q=q: ask_store.nearest(
                conn, q, ["example"], ["store"], 12), runs=3) for q in queries]
            truth = [{h.id for h in ask_store.nearest(conn, q, ["example"], ["store"], 12)}
                     for q in queries]
            conn.execute("RESET enable_indexscan")
            recall = statistics.mean(len(f & t) / len(t) for f, t in zip(found, truth,
                                                                          strict=True))
            examples, _, _ = knowledge.curated()
            answers, runs = [], []
            limits = guard.Limits(200, 1e6, 5.0)
            for ex in examples[:20]:
                t0 = time.perf_counter()
                out = ask(conn, settings, ex.questions[1], asked_by="cli")
                answers.append(time.perf_counter() - t0)
                if out["sql"]:
                    runs.append(median_seconds(lambda s=out["sql"]: guard.run(conn, s, limits),
                                               runs=3))
    h, e = statistics.median(hnsw) * 1000, statistics.median(exact) * 1000
    a, r = statistics.median(answers) * 1000, statistics.median(runs) * 1000
    rows = [
        ("embedding throughput, 600 short questions",
         f"MiniLM int8 ONNX {minilm_rate:,.0f} texts/s", f"hashing {hash_rate:,.0f} texts/s",
         f"{minilm_rate / hash_rate:.3f}x"),
        (f"retrieval, 12 nearest of {STORED:,} stored rows (median of 50 questions)",
         f"HNSW {h:.2f} ms (recall {recall:.2f} of the exact 12)", f"exact scan {e:.2f} ms",
         f"{h / e:.2f}x"),
        ("answer end to end, `retrieval` (median of 20 curated questions, second phrasing)",
         f"{a:.1f} ms", f"the guarded run of its SQL alone {r:.1f} ms", f"{a / r:.1f}x"),
    ]
    lines = "\n".join(f"| {m} | {f} | {b} | {x} |" for m, f, b, x in rows)
    table = f"""## Ask

| measure | figure | baseline (same run) | ratio |
|---|---|---|---|
{lines}

The answer includes embedding the question, the knowledge check (curated examples and
catalogs up to date), retrieval of examples and documentation, slot filling, the guard
(parse, `EXPLAIN`, read-only run as the reader role) and the question's log row; the store
holds the {STORED:,} knowledge rows and otherwise empty tables."""
    print(table)
    write_section("ask", table)


if __name__ == "__main__":
    main()
