"""The demo's child processes: the analyzer service, Prometheus and Alertmanager.

Each runs in its own session (a Ctrl-C in the terminal reaches the demo only, which then
stops them itself, by pid), on a free loopback port, with its log in the demo's directory.
Prometheus loads the repository's rule files with every `for:` removed, so an alert fires on
its first true evaluation instead of after its 2 minutes; expressions, labels and
annotations are the repository's (docs/monitoring.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgarchitect.log import event

log = logging.getLogger("pgarchitect.demo.stack")

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "prometheus" / "rules"
ALERTMANAGER_CONFIG = REPO / "prometheus" / "alertmanager.yml"


@dataclass
class Child:
    """A child process whose output goes to `log_path`; `stop()` is idempotent."""

    name: str
    argv: list[str]
    log_path: Path
    url: str
    env: Mapping[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Child:
        with self.log_path.open("wb") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=self.env,
                                          start_new_session=True)
        log.info(event("demo.child_started", child=self.name, pid=self.popen.pid, url=self.url))
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        p = self.popen
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
        log.info(event("demo.child_stopped", child=self.name, pid=p.pid, code=p.returncode))


def http_ok(url: str) -> bool:
    """Whether `url` answers 2xx now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(200 <= resp.status < 300)
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(child: Child, path: str, within: float = 60.0) -> None:
    """Poll `child.url + path` until it answers; RuntimeError with the log's tail if not."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not child.alive():
            break
        if http_ok(child.url + path):
            return
        time.sleep(0.2)
    tail = child.log_path.read_text(errors="replace").splitlines()[-5:]
    state = "exited" if not child.alive() else f"not ready after {within:.0f}s"
    raise RuntimeError(f"{child.name} {state} (log {child.log_path}): " + " | ".join(tail))


def binary(*names: str) -> str | None:
    """The first of `names` found on PATH."""
    return next(filter(None, (shutil.which(n) for n in names)), None)


def monitoring_available() -> str | None:
    """None when Prometheus, Alertmanager and the repository's rules are here, else why not."""
    if binary("prometheus") is None:
        return "prometheus is not installed (apt-get install prometheus)"
    if binary("alertmanager", "prometheus-alertmanager") is None:
        return "alertmanager is not installed (apt-get install prometheus-alertmanager)"
    if not RULES_DIR.is_dir():
        return f"the repository's rules are not at {RULES_DIR}"
    return None


def analyzer_child(directory: Path, config: Mapping[str, Any], port: int,
                   token: str) -> Child:
    """`pgarchitect analyzer` with `config`; the token goes in through the environment."""
    path = directory / "analyzer.yml"
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))

    env = {**os.environ, "PGARCHITECT_ADMIN_TOKEN": token}
    return Child("analyzer", [sys.executable, "-m", "pgarchitect", "analyzer", "--config",
                              str(path)], directory / "analyzer.log",
                 f"http://127.0.0.1:{port}", env)


def rules_without_for(directory: Path) -> list[Path]:
    """Copies of the repository's rule files with every `for:` removed (see module doc)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for source in sorted(RULES_DIR.glob("*.yml")):
        doc = yaml.safe_load(source.read_text())
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                rule.pop("for", None)
        target = directory / source.name
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(target)
    return out


def prometheus_child(directory: Path, port: int, jobs: Mapping[str, Sequence[str]],
                     alertmanager_port: int) -> Child:
    """Prometheus scraping `jobs` every second with the repository's rules (no `for:`)."""
    work = directory / "prometheus"
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s", "external_labels": {"cluster": "demo"}},
        "rule_files": [str(p) for p in rules_without_for(work / "rules")],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}
                           for job, targets in jobs.items()],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    prom = binary("prometheus")
    assert prom is not None
    return Child("prometheus", [
        prom, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s",
        "--log.level=warn"], work / "prometheus.log", f"http://127.0.0.1:{port}")


def alertmanager_child(directory: Path, port: int) -> Child:
    """Alertmanager with the repository's routing; its webhooks point nowhere in the demo."""
    work = directory / "alertmanager"
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(ALERTMANAGER_CONFIG, work / "alertmanager.yml")
    am = binary("alertmanager", "prometheus-alertmanager")
    assert am is not None
    return Child("alertmanager", [
        am, f"--config.file={work / 'alertmanager.yml'}", f"--storage.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
        "--log.level=warn"], work / "alertmanager.log", f"http://127.0.0.1:{port}")
