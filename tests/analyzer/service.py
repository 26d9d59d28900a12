"""Running `pgarchitect analyzer` processes for tests: config, start, HTTP, metrics."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml

from pgarchitect.demo.embedded import PgServer, embedded_postgres
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from tests.monitoring.stack import Process, Prometheus, free_port, http_ok, running
from tests.waiting import eventually

TOKEN = "test-token-1234"


def cli() -> list[str]:
    return [sys.executable, "-m", "pgarchitect"]


@dataclass
class Analyzer:
    """One running analyzer process."""

    url: str
    process: Process
    token: str | None = TOKEN

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = "",
                raw: bytes | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body or text)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        use = self.token if token == "" else token
        if use is not None:
            req.add_header("Authorization", f"Bearer {use}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics as 'name{labels}' -> value (labels as exposed)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


def write_config(path: Path, store: str, targets: Mapping[str, str],
                 **analyzer: Any) -> tuple[Path, int]:
    """A config file for an analyzer on a free port; returns (path, port)."""
    port = free_port()
    section = {"listen": f"127.0.0.1:{port}", "snapshot_interval": "1s",
               "worker_stalled_timeout": "3s", "shutdown_timeout": "10s",
               "admin_token": TOKEN, **analyzer}
    path.write_text(yaml.safe_dump({
        "targets": [{"name": n, "dsn": d} for n, d in targets.items()],
        "store": {"dsn": store}, "analyzer": section, "log_level": "info"}))
    return path, port


@contextlib.contextmanager
def analyzer(tmp: Path, name: str, store: str, targets: Mapping[str, str],
             **settings: Any) -> Iterator[Analyzer]:
    """A running analyzer (ready: store reachable, worker up); stopped with SIGTERM after."""
    config, port = write_config(tmp / f"{name}.yml", store, targets, **settings)
    proc = Process(name, [*cli(), "analyzer", "--config", str(config)], tmp / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    with running(proc, lambda: http_ok(url + "/readyz"), timeout=60):
        yield Analyzer(url, proc, settings.get("admin_token", TOKEN))


@dataclass
class StoreGone:
    """A running service whose store has stopped; `restart_store` brings it back."""

    service: Analyzer
    store: str
    data: Path
    port: str

    def restart_store(self) -> contextlib.AbstractContextManager[PgServer]:
        """The store again, on its data and port."""
        return embedded_postgres(18, directory=self.data, settings={"port": self.port})


@contextlib.contextmanager
def store_gone(tmp: Path, name: str, targets: Mapping[str, str],
               **settings: Any) -> Iterator[StoreGone]:
    """An analyzer whose store (an embedded server of its own) stopped under it: /readyz 503."""
    data, port = tmp / "store", str(free_port())
    with embedded_postgres(18, directory=data, settings={"port": port}) as server:
        store = server.create_database("store")
        migrate(Dsn(store))
        service = contextlib.ExitStack()
        s = service.enter_context(analyzer(tmp, name, store, targets, **settings))
    with service:  # the store is stopped now
        eventually(lambda: s.request("GET", "/readyz")[0] == 503, "/readyz to say not ready")
        yield StoreGone(s, store, data, port)


def rows(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql.encode(), params).fetchall()


def sample(metrics: Mapping[str, float], name: str, **labels: str) -> float | None:
    """The value of one series, labels in any order; None when absent."""
    for key, value in metrics.items():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})?", key)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if got == labels:
            return value
    return None


def firing(prom: Prometheus, alertname: str, **labels: str) -> list[dict[str, Any]]:
    """The alerts of that name (and labels) Prometheus has firing now."""
    return [a for a in prom.alerts()
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"
            and all(a["labels"].get(k) == v for k, v in labels.items())]
