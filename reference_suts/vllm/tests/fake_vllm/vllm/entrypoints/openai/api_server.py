"""A fake ``vllm.entrypoints.openai.api_server`` for tests: stdlib HTTP, scripted behaviour.

Accepts the real server's arguments it needs (``--host``, ``--port``, ``--served-model-name``,
``--model``) and ignores the rest. ``/health`` answers 200; ``/v1/models`` lists the model;
``/v1/completions`` and ``/v1/chat/completions`` stream ``FAKE_VLLM_TOKENS`` (default 4) one-token
SSE chunks ``FAKE_VLLM_ITL_MS`` apart, token ids 10, 11, ..., then a usage chunk and ``[DONE]``.
A request without its API's input field (``prompt`` / ``messages``) gets 400, as from vLLM.
A prompt containing ``die`` makes the process print a line and exit with code 3 after the first
chunk. Environment knobs: ``FAKE_VLLM_FAIL_START`` (exit 1 at start with a CUDA-like message),
``FAKE_VLLM_STARTUP_S`` (delay before listening), ``FAKE_VLLM_IGNORE_TERM`` (ignore SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _arg(name: str, default: str) -> str:
    argv = sys.argv
    return argv[argv.index(name) + 1] if name in argv else default


MODEL = _arg("--served-model-name", _arg("--model", "fake"))
TOKENS = int(os.environ.get("FAKE_VLLM_TOKENS", "4"))
ITL_S = float(os.environ.get("FAKE_VLLM_ITL_MS", "1")) / 1e3


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        return None

    def _json(self, obj: object, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path == "/health":
            self._json({})
        elif self.path == "/v1/models":
            self._json({"data": [{"id": MODEL}]})
        else:
            self._json({"error": "not found"}, 404)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_POST(self) -> None:  # noqa: N802
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chat = self.path.endswith("/chat/completions")
        field = "messages" if chat else "prompt"
        if field not in req:  # as vLLM's request validation: each API needs its own input field
            self._json({"error": {"message": f"{field}: Field required"}}, 400)
            return
        prompt = json.dumps(req[field])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        n = int(req.get("max_tokens") or TOKENS)
        n = min(n, TOKENS)
        for i in range(n):
            if i:
                time.sleep(ITL_S)
            choice = {"index": 0, "token_ids": [10 + i]}
            if chat:
                choice["delta"] = {"content": f"t{i} "}
            else:
                choice["text"] = f"t{i} "
            self._chunk(b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n")
            if "die" in prompt:
                print("fake vllm: engine core died (scripted)", flush=True)
                os._exit(3)
        usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n}}
        self._chunk(b"data: " + json.dumps(usage).encode() + b"\n\n")
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main() -> None:
    if os.environ.get("FAKE_VLLM_FAIL_START"):
        print("RuntimeError: CUDA out of memory (scripted)", flush=True)
        sys.exit(1)
    if os.environ.get("FAKE_VLLM_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(float(os.environ.get("FAKE_VLLM_STARTUP_S", "0")))
    srv = ThreadingHTTPServer((_arg("--host", "127.0.0.1"), int(_arg("--port", "8000"))), Handler)
    srv.daemon_threads = True
    print(f"fake vllm serving {MODEL}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
