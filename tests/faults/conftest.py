"""A fake Ray dashboard (the job-submission HTTP API only) that can misbehave on purpose.

``ray.job_submission.JobSubmissionClient`` talks to it for real over HTTP: version check,
working-dir package upload, job submission, status and logs. What it received is recorded, so
tests can check what was (or was not) sent.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeDashboard:
    """The Ray job API on 127.0.0.1:<random port>.

    Args:
        logs: what ``GET /api/jobs/<id>/logs`` returns (the job's whole log).
        token: ``None`` (no auth) or the token required as ``Authorization: Bearer <token>``;
            a missing header gets 401 and a wrong one 403, as Ray's token-auth middleware does.
        vanish_after_submit: stop answering right after ``POST /api/jobs/`` (connections refused).
        status: the job status every ``GET /api/jobs/<id>`` reports.
        not_ray: answer 404 to everything (some other web server at that address).
    """

    def __init__(self, logs: str = "=== RAYBENCH-EXIT 0 ===\n", token: str | None = None,
                 vanish_after_submit: bool = False, status: str = "SUCCEEDED", not_ray: bool = False) -> None:
        self.logs = logs
        self.not_ray = not_ray
        self.token = token
        self.vanish_after_submit = vanish_after_submit
        self.status = status
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.packages: dict[str, bytes] = {}  # uploaded working_dir zips by path
        self.jobs: list[dict[str, Any]] = []  # POSTed job submissions
        self.vanished = False  # set once the job is posted with vanish_after_submit
        self._gone = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeDashboard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if not self._gone.is_set():
            self._gone.set()
            self._server.shutdown()
            self._server.server_close()

    def uploaded_names(self) -> set[str]:
        """File names inside every uploaded working_dir package."""
        names: set[str] = set()
        for blob in self.packages.values():
            with zipfile.ZipFile(io.BytesIO(blob)) as z:
                names |= {n for n in z.namelist() if not n.endswith("/")}
        return names

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        dash = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, code: int, body: Any) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _authorized(self) -> bool:
                if dash.token is None:
                    return True
                got = self.headers.get("Authorization", "")
                if not got:
                    self._send(401, b"Unauthorized: Missing authentication token")
                    return False
                if got != f"Bearer {dash.token}":
                    self._send(403, b"Forbidden: Invalid authentication token")
                    return False
                return True

            def _route(self, method: str) -> None:
                dash.requests.append((method, self.path))
                body = self._body()
                if dash.vanished:  # a request that slipped in before the socket closed: hang up
                    self.close_connection = True
                    return
                if not self._authorized():
                    return
                path = self.path.rstrip("/")
                if dash.not_ray:
                    self._send(404, b"<html>Not Found</html>")
                elif method == "GET" and path == "/api/version":
                    self._send(200, {"version": "4", "ray_version": "2.60.0", "ray_commit": "fake"})
                elif path.startswith("/api/packages/"):
                    if method == "GET":
                        self._send(200 if self.path in dash.packages else 404, b"")
                    else:
                        dash.packages[self.path] = body
                        self._send(200, b"")
                elif method == "POST" and path == "/api/jobs":
                    job = json.loads(body)
                    dash.jobs.append(job)
                    self._send(200, {"job_id": "raysubmit_fake", "submission_id": job["submission_id"]})
                    if dash.vanish_after_submit:
                        dash.vanished = True
                        threading.Thread(target=dash._stop, daemon=True).start()
                elif method == "GET" and path.endswith("/logs"):
                    self._send(200, {"logs": dash.logs})
                elif method == "GET" and path.startswith("/api/jobs/"):
                    sid = path.rsplit("/", 1)[1]
                    self._send(200, {"type": "SUBMISSION", "job_id": "raysubmit_fake", "submission_id": sid,
                                     "status": dash.status, "entrypoint": "python -m raybench.ray.jobs exec"})
                else:
                    self._send(404, b"not found")

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

        return Handler


@pytest.fixture
def dashboard() -> Iterator[type[FakeDashboard]]:
    """The :class:`FakeDashboard` class (tests build one per case, as a context manager)."""
    yield FakeDashboard
