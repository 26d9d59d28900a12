"""The running analyzer service against hostile clients and failing jobs (raw sockets).

Every malformed request -- bytes that are not UTF-8 in a header, a JSON array 20,000 deep, a
body marked gzip that is not, a lone surrogate, a request line that is not HTTP -- is a 4xx
JSON answer; slow clients are bounded per client and timed out; a job that keeps failing is
counted, logged once and shown on /readyz.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import hypothesis
import pytest
from hypothesis import strategies as st

from analyzer.api.hardening import PER_CLIENT
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from tests.analyzer.service import TOKEN, Analyzer, analyzer, sample
from tests.conftest import drop_database, new_database
from tests.waiting import eventually


@dataclass(frozen=True)
class Hostile:
    service: Analyzer
    port: int


@pytest.fixture(scope="module")
def hostile(pg18: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    store = new_database(pg18, "store")
    target = new_database(pg18, "app", extensions=("pg_stat_statements",))
    gone = pg18.dsn("no_such_database")
    migrate(Dsn(store))
    try:
        with analyzer(tmp_path_factory.mktemp("hostile"), "hostile", store,
                      {"app": target, "gone": gone}) as service:
            yield Hostile(service, int(service.url.rsplit(":", 1)[1]))
    finally:
        drop_database(pg18, target)
        drop_database(pg18, store)


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: the server closed or kept waiting without answering
    content_type: str
    body: bytes


def raw(port: int, data: bytes, source: str = "127.0.0.1", wait: float = 3.0) -> Answer:
    """Send `data` as it is; read one response (or nothing within `wait`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait,
                                  source_address=(source, 0)) as sock:
        sock.sendall(data)
        got = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
                head, sep, body = got.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if sep and m and len(body) >= int(m.group(1)):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    if not got.startswith(b"HTTP/"):
        return Answer(None, "", got)
    head, _, body = got.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?im)^content-type:\s*([^;\r\n]+)", head)
    return Answer(status, m.group(1).decode() if m else "", body)


def request(method: str, path: str, body: bytes = b"", token: bytes | None = TOKEN.encode(),
            headers: dict[bytes, bytes] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: test", b"Connection: close"]
    if token is not None:
        lines.append(b"Authorization: Bearer " + token)
    for k, v in (headers or {}).items():
        lines.append(k + b": " + v)
    if body:
        lines += [b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def json_4xx(answer: Answer) -> dict[str, object]:
    assert answer.status is not None and 400 <= answer.status < 500, answer
    assert answer.content_type == "application/json", answer
    decoded = json.loads(answer.body)
    assert isinstance(decoded, dict) and isinstance(decoded.get("error"), str)
    return decoded


AUDITS = "/admin/database/audits"
STATUS = "/admin/database/recommendations/1/status"


def test_malformed_requests_are_4xx_json(hostile: Hostile) -> None:
    port = hostile.port
    json_4xx(raw(port, request("GET", AUDITS, token=b"\xff\xfe\x80 x")))
    assert raw(port, request("GET", AUDITS, token=b"\xff\xfe\x80 x")).status == 401
    deep = b"[" * 20_000 + b"]" * 20_000
    assert json_4xx(raw(port, request("POST", "/admin/database/run-audit", deep)))
    lie = request("POST", "/admin/database/run-audit", b"definitely not gzip",
                  headers={b"Content-Encoding": b"gzip"})
    json_4xx(raw(port, lie))
    for note in (b'{"status": "accepted", "note": "\\ud800"}',
                 b'{"status": "accepted", "note": "\xff\xfe"}',
                 b'{"status": "accepted", "note": "a\\u0000b"}'):
        json_4xx(raw(port, request("POST", STATUS, note)))
    json_4xx(raw(port, b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"))
    json_4xx(raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"))
    json_4xx(raw(port, b"POST /admin/database/run-audit HTTP/1.1\r\nHost: x\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"))
    query = raw(port, request("GET", AUDITS + "?target=%ff%fe%ed%a0%80&status=%00"))
    assert query.status is not None and query.status < 500 and query.content_type == \
        "application/json"
    assert raw(port, request("GET", "/healthz")).status == 200
    assert "Traceback" not in hostile.service.log()


_LAYERS = st.sampled_from(["line", "header", "value", "body", "encoding"])


@hypothesis.settings(max_examples=120, deadline=None, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(layer=_LAYERS, junk=st.binary(min_size=1, max_size=300),
                  note=st.text(max_size=40))
def test_fuzz_malformed_bytes_at_every_layer(hostile: Hostile, layer: str, junk: bytes,
                                              note: str) -> None:
    body = json.dumps({"status": "accepted", "note": note}).encode()
    clean = junk.replace(b"\r", b"").replace(b"\n", b"")
    if layer == "line":
        data = b"POST " + clean + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    elif layer == "header":
        data = request("GET", AUDITS, headers={clean or b"x": b"1"})
    elif layer == "value":
        data = request("POST", STATUS, body, token=clean)
    elif layer == "body":
        data = request("POST", STATUS, body[: len(body) // 2] + junk)
    else:
        data = request("POST", STATUS, junk, headers={b"Content-Encoding": b"gzip"})
    answer = raw(hostile.port, data, wait=2.0)
    if answer.status is None:
        return  # an incomplete request the server waits on (until its head timeout)
    assert answer.status < 500, (layer, data[:200], answer)
    assert answer.content_type == "application/json", (layer, data[:200], answer)
    json.loads(answer.body)


def test_slow_clients_are_bounded_and_timed_out(hostile: Hostile) -> None:
    socks = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", hostile.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # and never the rest
            socks.append(s)
        # Another client is served meanwhile.
        assert raw(hostile.port, request("GET", "/healthz"), source="127.0.0.2").status == 200
        closed: set[int] = set()
        refused = 0

        def all_closed() -> bool:
            nonlocal refused
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                s.setblocking(False)
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 429"):
                    refused += 1
                closed.add(i)
            return len(closed) == len(socks)

        eventually(all_closed, "every slow client closed by the server", within=60)
        assert refused >= 200 - PER_CLIENT
    finally:
        for s in socks:
            s.close()
    assert raw(hostile.port, request("GET", "/healthz")).status == 200


def test_a_failing_job_is_counted_logged_once_and_on_readyz(hostile: Hostile) -> None:
    s = hostile.service

    def failing() -> list[dict[str, object]]:
        status, body = s.request("GET", "/readyz")
        assert status == 200  # the API is served; the body says what fails
        if body["failing"]:
            assert body["status"] == "degraded"
        return [f for f in body["failing"] if f["target"] == "gone" and f["failures"] >= 3]

    found = eventually(failing, "the unreachable target's snapshots on /readyz", within=60)
    assert found[0]["task"] == "snapshot" and "no_such_database" in str(found[0]["reason"])
    failed = sample(s.metrics(), "pgarchitect_snapshot_runs_total", target="gone",
                    status="failed")
    assert failed is not None and failed >= 3
    lines = [ln for ln in s.log().splitlines() if "snapshot.failed" in ln and "gone" in ln]
    assert len(lines) == 1, lines  # once per cause, not once per attempt
    assert not any("Job snapshot" in ln and "gone" in ln and "failed" in ln
                   for ln in s.log().splitlines())

    assert "Traceback" not in s.log()  # after the malformed requests, the fuzz and the jobs
