"""`pgarchitect demo` end to end: the story in order, exit 0, no server left (also on Ctrl-C,
after --keep-running and when the demo is killed with SIGKILL); log lines in the demo's log
file, not on the console."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgarchitect.demo.steps import STEPS
from tests.waiting import eventually

DEMO = [sys.executable, "-m", "pgarchitect", "demo"]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (INFO|WARNING|ERROR) ", re.M)
N = len(STEPS)
SERVICES_UP = "] start the exporter, the reference app, the analyzer service"


def _pids_with(text: str) -> list[int]:
    """Processes whose command line mentions `text` (a directory only the demo uses)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(proc.name))
    return pids


def _directories(out: str) -> tuple[str, str]:
    """The demo's own directory and the embedded server's, from its first two lines."""
    demo = re.search(r"logs in (\S+)/demo\.log", out)
    data = re.search(r"data in (\S+)\)", out)
    assert demo and data, out
    return demo.group(1), data.group(1)


def _assert_nothing_left(demo_dir: str, data_dir: str) -> None:
    assert not Path(data_dir).exists()
    assert _pids_with(data_dir) == [], "the embedded server is still running"
    assert _pids_with(demo_dir) == [], "a child of the demo is still running"


@pytest.fixture
def popen() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored: the demo gets Ctrl-C as a terminal would deliver it, whoever runs the tests.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(popen: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*DEMO, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)
    popen.append(proc)
    return proc


def _read_until(proc: subprocess.Popen[str], marker: str) -> str:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"the demo ended before {marker!r}:\n{''.join(seen)}")


def test_demo_tells_the_whole_story_and_cleans_up() -> None:
    proc = subprocess.run([*DEMO, "--seconds", "4"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = proc.stdout
    steps = re.findall(rf"^\[\s*(\d+)/{N}\s+[\d.]+s\] ", out, re.M)
    assert steps == [str(n) for n in range(1, N + 1)], out
    # The freshly loaded tables are analysed first: the audits propose what the story is about.
    assert "load 20,000 users and 300,000 behavior logs, analyse them" in out
    assert "ANALYZE" not in out
    healthy, _, rest = out.partition("plant a regression: dropped index "
                                     "behavior_logs_user_id_created_at_idx")
    assert rest, out
    # Measured before the drop: the three paths, each within the target, both sources.
    for path in ("analytics", "orm", "thin"):
        row = re.search(rf"^{path}\s+([\d,]+)\s+[\d.]+\s+[\d.]+%\s+([\d,]+)\s+[\d.]+\s+"
                        r"within target$", healthy, re.M)
        assert row, healthy
        assert int(row.group(1).replace(",", "")) > 0
        assert int(row.group(2).replace(",", "")) > 0
    assert "every path's p95 within the 50 ms target" in healthy
    assert "SDK: statements the app's driver hooks timed" in healthy
    after_drop, _, rest = rest.partition("audit through the analyzer service")
    assert "OVER TARGET" in after_drop
    # Prometheus and Alertmanager are installed here (make test installs them).
    assert re.search(r"OrmPathLatencyBudgetBurnFast firing in Prometheus for orm_path \S+.* "
                     r"and received by Alertmanager", after_drop), after_drop
    assert re.search(r"index public\.behavior_logs_user_id_created_at_idx was dropped at "
                     r"\d{4}-\d\d-\d\dT", rest), rest
    # A validated recommendation with its costs, proposed, applied, then verified.
    rec = re.search(r"recommendation (\d+) \(proposed\): CREATE INDEX CONCURRENTLY \S+ ON "
                    r"public\.behavior_logs .*\n\s+estimated cost [\d.]+ → [\d.]+ planner units "
                    r".*validated by sandbox", rest)
    assert rec, rest
    rec_id = rec.group(1)
    stem = rf"pgarchitect_{rec_id}_create_index_public_behavior_logs"
    proposal = re.search(rf"wrote ({stem}\.md), ({stem}\.sql)(?:, {stem}\.svg)? into (\S+)",
                         rest)
    assert proposal, rest
    assert (Path(proposal.group(3)) / proposal.group(2)).read_text().rstrip().endswith(";")
    assert f"recommendation {rec_id} is now applied" in rest
    assert "every path's p95 back within the 50 ms target" in rest
    verified = re.search(rf"recommendation {rec_id} verified: ([\d.]+) ms → ([\d.]+) ms per call",
                         rest)
    assert verified, rest
    assert float(verified.group(2)) < float(verified.group(1))
    # The page of the last audit, written into the demo's directory (which outlives the demo).
    page = re.search(r"the audit as a page \(audit (\d+)\b.*: wrote (\S+\.html) ", rest)
    assert page, rest
    html = Path(page.group(2)).read_text()
    assert f"audit {page.group(1)}" in html.lower() and "<svg" in html
    assert "behavior_logs_user_id_created_at_idx" in html  # the cause, marked on a chart
    # Two questions about what it did, answered in SQL over the store (docs/ask.md).
    _, _, asked = rest.partition("ask two questions about it")
    assert asked.startswith(" (`pgarchitect ask`") and ": 2 of 2 answered" in asked, rest
    assert "? why did things get slower" in asked and "index_dropped" in asked, asked
    assert not LOG_LINE.search(out) and not LOG_LINE.search(proc.stderr), "log lines on console"
    demo_dir, data_dir = _directories(out)
    log = (Path(demo_dir) / "demo.log").read_text()
    assert f"demo.step_finished step={N}" in log
    assert "Traceback" not in log + proc.stderr
    assert (Path(demo_dir) / "analyzer.log").stat().st_size > 0
    _assert_nothing_left(demo_dir, data_dir)


def test_ctrl_c_while_the_stack_runs_leaves_nothing(popen: list[subprocess.Popen[str]]) -> None:
    proc = _start(popen, "--seconds", "60")
    out = _read_until(proc, SERVICES_UP)  # server, analyzer, Prometheus, Alertmanager all up
    demo_dir, data_dir = _directories(out)
    assert _pids_with(data_dir), "the demo server should be running now"
    assert len(_pids_with(demo_dir)) >= 3, "analyzer, Prometheus and Alertmanager should run"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert "Traceback" not in err
    _assert_nothing_left(demo_dir, data_dir)


def test_keep_running_serves_every_url_until_ctrl_c(popen: list[subprocess.Popen[str]]) -> None:
    proc = _start(popen, "--seconds", "1", "--keep-running", "--no-monitoring",
                  "--no-regression")
    out = _read_until(proc, "Ctrl-C stops it all")
    demo_dir, data_dir = _directories(out)
    exporter = re.search(r"^exporter\s+(http://\S+/metrics)\s*$", out, re.M)
    api = re.search(r"^analyzer API\s+(http://\S+) \(Authorization: Bearer (\S+)\)\s*$", out, re.M)
    assert exporter and api, out
    with urllib.request.urlopen(exporter.group(1), timeout=10) as resp:
        assert "pg_up" in resp.read().decode()
    request = urllib.request.Request(api.group(1),
                                     headers={"Authorization": f"Bearer {api.group(2)}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        audits = json.loads(resp.read())
    assert [a["status"] for a in audits] == ["succeeded", "succeeded"]
    # The page's signed link opens without the token (a person's browser has none).
    link = re.search(r"served by the analyzer at (http://\S+signature=\w+)", out)
    assert link, out
    page = urllib.request.Request(link.group(1), headers={"Accept": "text/html"})
    with urllib.request.urlopen(page, timeout=10) as resp:
        assert "<svg" in resp.read().decode()
    assert proc.poll() is None and _pids_with(data_dir), "it waits for Ctrl-C"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    _assert_nothing_left(demo_dir, data_dir)


def _descendants(root: int) -> dict[int, str]:
    """Every process below `root`, as pid -> its start time (to tell a reused pid apart)."""
    children: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(proc.name))
        started[int(proc.name)] = fields[19]
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out[pid] = started[pid]
        todo += children.get(pid, [])
    return out


def _running(pid: int, started: str) -> bool:
    """The process is there and not a zombie (a zombie has ended; its parent has not reaped it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"


def test_sigkill_leaves_no_process_behind(popen: list[subprocess.Popen[str]]) -> None:
    proc = _start(popen, "--seconds", "60")
    out = _read_until(proc, SERVICES_UP)
    demo_dir, data_dir = _directories(out)
    try:
        left = _descendants(proc.pid)
        names = {Path(f"/proc/{pid}/exe").resolve().name for pid in left
                 if _running(pid, left[pid])}
        assert {"postgres", "prometheus"} <= names and len(left) >= 6, names
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        eventually(lambda: not [pid for pid, t in left.items() if _running(pid, t)],
                   "every process the demo started to end after it was killed", within=60)
        assert _pids_with(data_dir) == [] and _pids_with(demo_dir) == []
    finally:
        shutil.rmtree(demo_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
