"""Child processes for the demo and the tests: one runner, one readiness poll, free ports, and
the monitoring programs' configuration (Prometheus with the repository's rules).

A `Child` runs in its own session (a Ctrl-C in the terminal reaches only us, and we stop it
ourselves, by pid), writes its output to a log file, and gets a parent-death signal: when
the process that started it dies, even by SIGKILL, the kernel signals the child
(`prctl(PR_SET_PDEATHSIG)`, Linux), so nothing outlives a killed demo or test run. The
signal follows the *thread* that started the child: start children from a thread that lives
as long as they should (the main thread, the event loop's thread), never from a worker
thread that ends first.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgarchitect.log import event

log = logging.getLogger("pgarchitect.demo.processes")

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "prometheus" / "rules"
ALERTMANAGER_CONFIG = REPO / "prometheus" / "alertmanager.yml"

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` that has the child receive `sig` when its parent dies (None off Linux).

    It runs in the child after the switch to another user (`Popen(user=...)`), which would
    otherwise clear the setting. A parent that died before the call is noticed by the
    parent pid having changed.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the forked child
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return hook


@dataclass
class Child:
    """A child process whose output goes to `log_path`; `stop()` is idempotent."""

    name: str
    argv: list[str]
    log_path: Path
    url: str = ""
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    death_signal: int = signal.SIGKILL
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Child:
        with self.log_path.open("wb") as out:
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.cwd, env=dict(self.env) if self.env is not None else None,
                start_new_session=True, preexec_fn=die_with_parent(self.death_signal))
        log.info(event("child.started", child=self.name, pid=self.popen.pid, url=self.url))
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the child's log, with a header naming it."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"--- last lines of {self.name} log {self.log_path} ---\n" + "\n".join(text[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        p = self.popen
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
        log.info(event("child.stopped", child=self.name, pid=p.pid, code=p.returncode))


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


def rules_without_for(directory: Path) -> list[Path]:
    """Copies of the repository's rule files with every `for:` removed, so that an alert
    fires on its first true evaluation instead of after its minutes (expressions, labels and
    annotations stay the repository's)."""
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


def prometheus_config(jobs: Mapping[str, Sequence[str]], *, rule_files: Sequence[Path] = (),
                      alertmanager: str | None = None, interval: str = "1s",
                      external_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Prometheus scraping `jobs` ({job: ["host:port", ...]}) and evaluating every
    `interval`, alerting to the Alertmanager at `alertmanager` ("host:port")."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": interval,
                   "external_labels": dict(external_labels or {"cluster": "demo"})},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}
                           for job, targets in jobs.items()],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager]}]}]}
    return config


def _configured_child(name: str, workdir: Path, port: int, config: Mapping[str, Any],
                      program: str, flags: Sequence[str]) -> Child:
    """`program` with `config` written to `workdir`/NAME.yml, listening on 127.0.0.1:`port`."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.yml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return Child(name, [program, f"--config.file={config_path}",
                        f"--web.listen-address=127.0.0.1:{port}", *flags, "--log.level=warn"],
                 workdir / f"{name}.log", f"http://127.0.0.1:{port}",
                 death_signal=signal.SIGTERM)


def prometheus_child(workdir: Path, port: int, config: Mapping[str, Any],
                     program: str) -> Child:
    """Prometheus with `config` (written to `workdir`) on 127.0.0.1:`port`."""
    return _configured_child("prometheus", workdir, port, config, program, [
        f"--storage.tsdb.path={workdir / 'data'}", "--rules.alert.resend-delay=1s"])


def alertmanager_child(workdir: Path, port: int, config: Mapping[str, Any],
                       program: str) -> Child:
    """Alertmanager with `config` (written to `workdir`) on 127.0.0.1:`port`, no cluster."""
    return _configured_child("alertmanager", workdir, port, config, program, [
        f"--storage.path={workdir / 'data'}", "--cluster.listen-address="])
