"""Alertmanager webhook receiver for docker-compose: prints every notification as one JSON line.

It runs in Alertmanager's network namespace and listens on 127.0.0.1:5001, the address
of the receivers in prometheus/alertmanager.yml. Standard library only.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            payload = json.loads(body)
            alerts = [
                {"status": a.get("status"), "labels": a.get("labels", {})}
                for a in payload.get("alerts", [])
            ]
            line = {"path": self.path, "receiver": payload.get("receiver"), "alerts": alerts}
        except (ValueError, AttributeError):
            line = {"path": self.path, "invalid_body": body[:200].decode("utf-8", "replace")}
        print(json.dumps(line, sort_keys=True), flush=True)
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:5001").rpartition(":")
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
