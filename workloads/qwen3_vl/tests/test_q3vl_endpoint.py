"""qwen3_vl through the ``vllm`` SUT (external mode) and ``openai_endpoint``, against a checking server.

The server (stdlib, 127.0.0.1, its own thread) compares every request body with the one the
MLPerf v6.0 reference sends for that product — built here from the raw demo rows, not from
``prompt.py`` — and answers 400 naming the first difference. It answers a scripted JSON per
product, so the run's hierarchical F1 is known in advance:

    product k % 4 == 0: the truth                  (overlap d,     predicted d)
    product k % 4 == 1: the truth minus its leaf    (overlap d - 1, predicted d - 1)
    product k % 4 == 2: the truth in a json fence   (unparsable: overlap 0, predicted d)
    product k % 4 == 3: "Zzz > Yyy"                 (overlap 0,     predicted 2)

with d the truth's depth; micro hF1 = 2 * sum(overlap) / (sum(predicted) + sum(true)).
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from raybench.config import load_run_config
from raybench.inprocess import InProcessExecutor
from raybench.run import run_benchmark
from workloads.qwen3_vl.demo import make_rows
from workloads.qwen3_vl.prompt import system_prompt

N = 32  # the workload's default demo catalogue (seed 0)
MODEL = "q3vl-test"


def _expected_user_text(row: dict[str, Any]) -> str:
    # The reference's f-string, spelled out: the candidates are the Python repr of the list.
    return (
        "The title of the product is the following:\n```text\n" + row["product_title"] + "\n```\n\n"
        "The description of the product is the following:\n```text\n" + row["product_description"] + "\n```\n\n"
        "The following are the possible product categories:\n```json\n"
        + repr(list(row["potential_product_categories"]))
        + "\n```\n"
    )


def _image_format(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    assert data.startswith(b"\xff\xd8\xff"), data[:4]
    return "JPEG"


def _answer(k: int, row: dict[str, Any]) -> str:
    truth, brand, second = row["ground_truth_category"], row["ground_truth_brand"], row["ground_truth_is_secondhand"]
    category = {0: truth, 1: truth.rsplit(" > ", 1)[0], 2: truth, 3: "Zzz > Yyy"}[k % 4]
    text = json.dumps({"category": category, "brand": brand, "is_secondhand": second})
    return f"```json\n{text}\n```" if k % 4 == 2 else text


class CheckingServer:
    """OpenAI chat server that checks each body against ``expected[title]`` and plays ``answers[title]``."""

    def __init__(self, expected: dict[str, dict[str, Any]], answers: dict[str, str]) -> None:
        self.expected = expected
        self.answers = answers
        self.titles: list[str] = []
        self.mismatches: list[str] = []
        self.paths: Counter[str] = Counter()
        self.images: dict[str, bytes] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:
                return None

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path == "/v1/models":
                    self._send(200, json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:  # noqa: N802
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.paths[self.path] += 1
                why = outer.check(self.path, req)
                if why:
                    outer.mismatches.append(why)
                    self._send(400, json.dumps({"error": {"message": why}}).encode())
                    return
                title = outer.title_of(req)
                answer = outer.answers[title]
                usage = {"prompt_tokens": 700, "completion_tokens": len(answer.split()), "total_tokens": 0}
                if not req.get("stream"):
                    msg = {"role": "assistant", "content": answer}
                    body = {"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}], "usage": usage}
                    self._send(200, json.dumps(body).encode())
                    return
                half = len(answer) // 2
                events = [{"choices": [{"index": 0, "delta": {"content": part}, "finish_reason": None}]}
                          for part in (answer[:half], answer[half:])]  # fmt: skip
                events.append({"choices": [], "usage": usage})
                sse = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
                self._send(200, sse, "text/event-stream")

        class Server(ThreadingHTTPServer):
            request_queue_size = 512  # an Offline burst opens one connection per request at once

        self._srv = Server(("127.0.0.1", 0), Handler)
        self._srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}"
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @staticmethod
    def title_of(req: dict[str, Any]) -> str:
        text = req["messages"][1]["content"][0]["text"]
        return text.split("```text\n", 1)[1].split("\n```", 1)[0]

    def check(self, path: str, req: dict[str, Any]) -> str | None:
        """``None`` when ``req`` is exactly the expected body, else the first difference."""
        if path != "/v1/chat/completions":
            return f"path {path}"
        try:
            title = self.title_of(req)
            url = req["messages"][1]["content"][1]["image_url"]["url"]
        except (KeyError, IndexError, TypeError) as exc:
            return f"layout: {exc!r}"
        self.titles.append(title)
        exp = self.expected.get(title)
        if exp is None:
            return f"unknown title {title!r}"
        head, _, b64 = url.partition(",")
        self.images[title] = base64.b64decode(b64, validate=True)
        if req != exp:
            for key in sorted(set(req) | set(exp)):
                if req.get(key) != exp.get(key):
                    return f"{title}: field {key!r} differs: {str(req.get(key))[:200]} != {str(exp.get(key))[:200]}"
        return None

    def __enter__(self) -> CheckingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _expected_bodies(rows: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for row in rows:
        image = row["product_image"]["bytes"]
        url = f"data:image/{_image_format(image)};base64," + base64.b64encode(image).decode("ascii")
        out[row["product_title"]] = {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": system_prompt()},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": _expected_user_text(row)},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                },
            ],
            **extra,
        }
    return out


# Each case: the SUT, its --set overrides, and the fields (beyond model and messages) the body
# must hold. The reference sends no sampling field by default (the server's generation_config).
CASES = {
    "vllm-external-defaults": (
        "vllm",
        ["sut.params.mode=external"],
        {"stream": True, "stream_options": {"include_usage": True}},
    ),
    "openai-endpoint-sampling": (
        "openai_endpoint",
        [
            "sut.params.stream=false",
            "sut.params.temperature=0.7",
            "sut.params.max_tokens=150",
            'sut.params.extra_body={"top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0}',
        ],
        {"max_tokens": 150, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_accuracy_run_sends_reference_requests_and_scores_scripted_answers(case, demo_cache, tmp_path: Path) -> None:
    sut, overrides, extra = CASES[case]
    rows = make_rows(N, seed=0)
    assert len({r["product_title"] for r in rows}) == N
    answers = {r["product_title"]: _answer(k, r) for k, r in enumerate(rows)}
    with CheckingServer(_expected_bodies(rows, extra), answers) as srv:
        cfg = load_run_config(
            None,
            [
                "workload=qwen3_vl",
                f"sut={sut}",
                "scenario=Offline",
                "mode=AccuracyOnly",
                "executor=inprocess",
                f"out={tmp_path}",
                f"sut.params.urls=[{srv.url}]",
                "sut.params.connections=2",
                "sut.params.timeout_s=30",
                "report=false",
                *overrides,
            ],
        )
        out = run_benchmark(cfg, InProcessExecutor())
    assert srv.mismatches == []
    assert out.metrics.num_errors == 0, out.result["errors"]
    assert srv.paths == {"/v1/chat/completions": N}  # never /v1/completions
    assert sorted(srv.titles) == sorted(answers)  # every product exactly once
    # the image in each data URL is the dataset's own bytes, unresized and not re-encoded
    assert all(srv.images[r["product_title"]] == r["product_image"]["bytes"] for r in rows)
    m = out.metrics
    assert m.num_errors == 0 and m.samples_issued == m.samples_completed == N
    # expected hF1 from the script (module docstring), counted from the raw rows
    overlap = pred = true = 0
    for k, r in enumerate(rows):
        d = len(r["ground_truth_category"].split(" > "))
        o, p = {0: (d, d), 1: (d - 1, d - 1), 2: (0, d), 3: (0, 2)}[k % 4]
        overlap, pred, true = overlap + o, pred + p, true + d
    assert (overlap, pred, true) == (51, 97, 117)  # pins the demo catalogue the numbers come from
    acc = out.accuracy
    assert acc is not None and out.accuracy_error is None
    assert acc.metrics["responses"] == 32.0 and acc.metrics["unparsable"] == 8.0
    assert acc.metrics["hierarchical_precision"] == 51 / 97
    assert acc.metrics["hierarchical_recall"] == 51 / 117
    assert acc.metrics["f1"] == pytest.approx(2 * 51 / (97 + 117), abs=1e-15)
    assert acc.passed is False
    assert json.loads((out.run_dir / "accuracy.txt").read_text().split("\n")[2]) == {"f1": acc.metrics["f1"]}


def test_performance_run_issues_the_planned_count(demo_cache, tmp_path: Path) -> None:
    """Offline, demo settings: 1.1 x 2 s x 40 qps = 88 samples, rounded up to a multiple of the 32 loaded
    samples (mlperf.conf: sample_concatenate_permutation) = 96, each a checked chat request."""
    rows = make_rows(N, seed=0)
    extra = {"stream": True, "stream_options": {"include_usage": True}}
    answers = {r["product_title"]: _answer(0, r) for r in rows}
    with CheckingServer(_expected_bodies(rows, extra), answers) as srv:
        cfg = load_run_config(
            None,
            ["workload=qwen3_vl", "sut=vllm", "scenario=Offline", "executor=inprocess", f"out={tmp_path}",
             "sut.params.mode=external", f"sut.params.urls=[{srv.url}]", "sut.params.connections=2", "report=false"],
        )  # fmt: skip
        out = run_benchmark(cfg, InProcessExecutor())
    m = out.metrics
    assert m.num_errors == 0, out.result["errors"]
    assert srv.mismatches == [] and srv.paths == {"/v1/chat/completions": 96}
    assert m.samples_issued == m.samples_completed == 96
    # output tokens are the server's usage.completion_tokens: 3 words per scripted JSON answer
    assert m.total_tokens == sum(len(answers[t].split()) for t in srv.titles)
