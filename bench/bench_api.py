"""Analyzer service benchmarks: admin API reads under 50 concurrent clients (p99
against the bare /healthz of the same process), and audits of twenty targets by one replica
and by two (wall time, and how many audits ran). Figures go to docs/benchmarks.md (section
`api`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import yaml

from bench.report import write_section
from pgarchitect.demo.embedded import embedded_postgres
from pgarchitect.demo.processes import free_port
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate

TOKEN = "bench-token"
CLIENTS = 50
REQUESTS_PER_CLIENT = 40
TARGETS = 20


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def _service(tmp: Path, name: str, store: str, targets: dict[str, str]) -> Iterator[str]:
    port = free_port()
    config = tmp / f"{name}.yml"
    config.write_text(yaml.safe_dump({
        "targets": [{"name": n, "dsn": d} for n, d in targets.items()],
        "store": {"dsn": store}, "log_level": "warning",
        "analyzer": {"listen": f"127.0.0.1:{port}", "admin_token": TOKEN,
                     "snapshot_interval": "1h", "worker_concurrency": 4}}))
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "pgarchitect", "analyzer", "--config",
                             str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"analyzer {name} did not start: see {tmp / name}.log")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


async def _load(url: str, paths: list[str]) -> tuple[list[float], int, int]:
    """CLIENTS concurrent clients, each REQUESTS_PER_CLIENT requests cycling over `paths`."""
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers,
                                     connector=aiohttp.TCPConnector(limit=CLIENTS)) as session:

        async def client(i: int) -> None:
            nonlocal errors
            for n in range(REQUESTS_PER_CLIENT):
                path = paths[(i + n) % len(paths)]
                t0 = time.perf_counter()
                async with session.get(url + path) as resp:
                    await resp.read()
                    if resp.status >= 500:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return latencies, errors, len(latencies)


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def _audits(store: str) -> int:
    with psycopg.connect(store) as conn:
        row = conn.execute("SELECT count(*) FROM pgarchitect.audit_run"
                           " WHERE status = 'succeeded'").fetchone()
    return int(row[0]) if row else 0


def _request_all(url: str, targets: list[str]) -> None:
    for t in targets:
        req = urllib.request.Request(url + "/admin/database/run-audit", method="POST",
                                     data=f'{{"target": "{t}"}}'.encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202


def _audit_round(url: str, store: str, targets: list[str]) -> tuple[float, int]:
    before = _audits(store)
    t0 = time.perf_counter()
    _request_all(url, targets)
    while _audits(store) < before + len(targets):
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    time.sleep(1.0)  # anything extra would show up now
    return wall, _audits(store) - before


def main() -> None:
    """Run the service benchmarks and write the docs/benchmarks.md section."""
    with tempfile.TemporaryDirectory(prefix="bench-api") as tmp_name, \
            embedded_postgres(18) as server:
        tmp = Path(tmp_name)
        store = server.create_database("store")
        migrate(Dsn(store))
        targets = {f"t{i:02d}": server.create_database(f"t{i:02d}",
                                                       extensions=("pg_stat_statements",))
                   for i in range(TARGETS)}
        names = list(targets)
        with _service(tmp, "one", store, targets) as url:
            one_wall, one_ran = _audit_round(url, store, names)
            with _service(tmp, "two", store, targets):
                two_wall, two_ran = _audit_round(url, store, names)
            reads = ["/admin/database/audits?limit=20", "/admin/database/audits/1",
                     "/admin/database/recommendations", "/admin/database/audits?target=t03"]
            asyncio.run(_load(url, ["/healthz"]))  # warm-up
            base, base_err, base_n = asyncio.run(_load(url, ["/healthz"]))
            got, err, n = asyncio.run(_load(url, reads))
        p99, p50, b99 = _p(got, 99), _p(got, 50), _p(base, 99)
        lines = [
            "## Analyzer service", "",
            f"Admin API reads, {CLIENTS} concurrent clients x {REQUESTS_PER_CLIENT} requests "
            "(audit list, audit report, recommendation list, filtered list), one process:", "",
            "| what | p50 | p99 | 5xx | compared with |", "|---|---|---|---|---|",
            f"| admin API reads ({n} requests) | {p50:.1f} ms | {p99:.1f} ms | {err} | "
            f"{p99 / b99:.1f} x the p99 of bare `/healthz` ({b99:.1f} ms, {base_n} requests, "
            f"{base_err} 5xx); bar p99 < 100 ms |",
            "", f"Load average during the run: {os.getloadavg()[0]:.1f} (clients, service and "
            "PostgreSQL share the machine's cores; p99 here is mostly the scheduler's tail).",
            "", f"Audits of {TARGETS} (empty) targets, requested through the API at once:", "",
            "| replicas | wall time | audits that ran | compared with |", "|---|---|---|---|",
            f"| one | {one_wall:.2f} s | {one_ran} | baseline |",
            f"| two | {two_wall:.2f} s | {two_ran} | {two_wall / one_wall:.2f} x one replica |",
        ]
        text = "\n".join(lines)
        print(text)
        write_section("api", text)


if __name__ == "__main__":
    main()
