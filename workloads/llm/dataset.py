"""CNN/DailyMail sample library for Llama 3.1 8B, in the MLPerf reference's JSON format.

The reference (``language/llama3.1-8b/dataset.py``) reads ``cnn_eval.json`` (13,368 samples;
``sample_cnn_eval_5000.json`` for edge) with pandas; each record has ``input`` (the templated
prompt text), ``tok_input`` (its Llama 3.1 token ids) and ``output`` (the reference summary).
We read the same file with :mod:`json` (pandas is not a dependency), accepting both the
records layout (a list of objects) and pandas' default columns layout (``{column: {row: value}}``).

Without ``data_dir``, a deterministic demo set is generated whose "tokenizer" is UTF-8 bytes
(token id = byte value), so the whole path prompt ids -> response ids -> decode -> ROUGE runs
offline with no model and no tokenizer download.

Other sources (``workload.params.source``, README "Datasets"): ``sharegpt``, ``hf`` (local
parquet/arrow), ``synthetic`` and ``shared_prefix`` (exact token lengths,
:mod:`workloads.llm.synthetic`) and ``trace`` (Mooncake JSONL; the library then carries the
trace's send times as ``arrival_ns`` for ``scenario.arrival.kind: trace``). Every sample is
``{"input", "tok_input", "output", "max_tokens"}`` (``messages`` for chat conversations; the
generated sources keep ``tok_input`` as an int32 array, and ``input`` only with ``prompt: text``).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raybench.core.cache import build_once
from workloads.llm.sources import read_hf_rows, read_sharegpt, read_trace
from workloads.llm.synthetic import shared_prefix_records, synthetic_records, trace_records
from workloads.llm.tokenizer import BYTES_TOKENIZER, Tokenizer, get_tokenizer

__all__ = ["BYTES_TOKENIZER", "LLMLibrary", "demo_dir", "load_library", "read_records", "source_demo"]

DEFAULT_TOKENIZER = "meta-llama/Llama-3.1-8B-Instruct"
"""The tokenizer of the reference set (``source: cnn`` with data)."""
DEMO_VERSION = 1
SOURCE_DEMO_VERSION = 1
DEMO_COUNT = 24
_FIELDS = ("input", "tok_input", "output")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read a reference-format dataset file into a list of ``{input, tok_input, output}`` dicts.

    Raises:
        ValueError: naming the file and the problem (not JSON, missing field, bad row).
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: dataset file not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(raw, dict):  # pandas to_json default: {column: {row_index: value}} or lists
        missing = [f for f in ("tok_input", "output") if f not in raw]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        cols = {k: (list(v.values()) if isinstance(v, dict) else list(v)) for k, v in raw.items() if k in _FIELDS}
        n = len(cols["output"])
        records = [{k: cols[k][i] for k in cols} for i in range(n)]
    elif isinstance(raw, list):
        records = raw
    else:
        raise ValueError(f"{path}: expected a list of records or a column mapping")
    for i, r in enumerate(records):
        if not isinstance(r, dict) or "tok_input" not in r or "output" not in r:
            raise ValueError(f"{path}: record {i} lacks 'tok_input' or 'output'")
        if not isinstance(r["tok_input"], list) or not all(isinstance(t, int) for t in r["tok_input"]):
            raise ValueError(f"{path}: record {i} field 'tok_input' must be a list of ints")
    return records


class LLMLibrary:
    """Query sample library over reference-format records.

    ``get(i)`` returns ``{"prompt": token ids (or text), "max_tokens": n}``, the payload the
    ``openai_endpoint`` and vLLM SUTs accept. ``decode`` turns response token ids back into text
    with the dataset's tokenizer (for the accuracy script).
    """

    def __init__(
        self,
        records: Sequence[dict[str, Any]],
        *,
        name: str = "llm",
        prompt: str = "tokens",
        max_tokens: int = 128,
        performance_count: int | None = None,
        tokenizer: str | None = None,
        tok: Tokenizer | None = None,
        ignore_eos: bool = False,
        arrival_ns: np.ndarray | None = None,
    ) -> None:
        if prompt not in ("tokens", "text"):
            raise ValueError(f"prompt: expected 'tokens' or 'text', got {prompt!r}")
        if prompt == "text" and any("input" not in r and "messages" not in r for r in records):
            raise ValueError("prompt: 'text' needs the 'input' field in every record")
        self.name = name
        self.records = list(records)
        self.targets = [r["output"] for r in self.records]
        self.tokenizer = tokenizer
        self._key = "tok_input" if prompt == "tokens" else "input"
        self._max_tokens = int(max_tokens)
        self._perf = min(int(performance_count or len(self.records)), len(self.records))
        self._loaded: dict[int, dict[str, Any]] = {}
        self._tok: Any = tok
        self._ignore_eos = bool(ignore_eos)
        if arrival_ns is not None:
            # A trace: its send times, and its samples issued in trace order (the plan replays both).
            self.arrival_ns = np.asarray(arrival_ns, dtype=np.int64)
            self.issue_order = np.arange(len(self.records), dtype=np.int64)
            self._perf = len(self.records)

    @property
    def total_count(self) -> int:
        return len(self.records)

    @property
    def performance_count(self) -> int:
        return self._perf

    def load(self, indices: Sequence[int]) -> None:
        for i in indices:
            r = self.records[i]
            sample: dict[str, Any] = ({"messages": r["messages"]} if "messages" in r
                                      else {"prompt": r[self._key]})
            sample["max_tokens"] = int(r.get("max_tokens", self._max_tokens))
            if self._ignore_eos:
                sample["params"] = {"ignore_eos": True}
            self._loaded[i] = sample

    def unload(self, indices: Sequence[int]) -> None:
        for i in indices:
            self._loaded.pop(i, None)

    def get(self, index: int) -> dict[str, Any]:
        sample = self._loaded.get(index)
        if sample is None:
            raise KeyError(f"sample {index} is not loaded")
        return sample

    def input_tokens(self, index: int) -> int:
        """Input tokens of sample ``index`` as the dataset tokenized it (``tok_input``; 0 if absent):
        what the run reports when the server sends no ``usage``."""
        ids = self.records[index].get("tok_input")
        return len(ids) if ids is not None else 0

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text, skipping special tokens (as the reference ``batch_decode``).

        Raises:
            ValueError: when the library has no tokenizer configured.
        """
        if self._tok is not None:
            return self._tok.decode(ids)
        if self.tokenizer == BYTES_TOKENIZER:
            return bytes(int(t) & 0xFF for t in ids).decode("utf-8", "replace")
        if not self.tokenizer:
            raise ValueError("tokenizer: needed to decode token-id responses (set params.tokenizer)")
        self._tok = get_tokenizer(self.tokenizer)
        return self._tok.decode(ids)


def demo_dir() -> Path:
    """Where the demo set lives: ``$RAYBENCH_CACHE/llm-demo-<version>`` (generated on first use)."""
    def build(d: Path) -> None:
        (d / "cnn_eval.json").write_text(json.dumps(_demo_records()), encoding="utf-8")

    return build_once(f"llm-demo-{DEMO_VERSION}", build, "cnn_eval.json")


_SUBJECTS = ["The city council", "A local bakery", "The national team", "Researchers", "A small startup",
             "The museum", "Firefighters", "The school board"]
_VERBS = ["approved", "announced", "celebrated", "rejected", "launched", "postponed", "completed", "reviewed"]
_OBJECTS = ["a new budget", "a community festival", "the season opener", "a vaccine trial",
            "an electric bus", "a dinosaur exhibit", "a rescue drill", "a reading program"]
_DETAILS = ["after months of debate.", "despite heavy rain.", "with strong public support.",
            "to mixed reviews.", "ahead of schedule.", "for the third year in a row."]


def _demo_records() -> list[dict[str, Any]]:
    rng = random.Random(20260321)
    out = []
    for _ in range(DEMO_COUNT):
        sents = [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_DETAILS)}"
                 for _ in range(rng.randint(4, 7))]
        article = " ".join(sents)
        prompt = f"Summarize the following news article in 128 tokens.\n\n{article}\n\nSummary:"
        out.append({"input": prompt, "tok_input": list(prompt.encode("utf-8")), "output": " ".join(sents[:2])})
    return out


def load_library(params: dict[str, Any], hf_tokenizer: Any = None) -> LLMLibrary:
    """Build the library from ``params`` (``source``, ``path``/``data_dir``, ``count``, ``prompt``...).

    Args:
        hf_tokenizer: an already loaded ``transformers`` tokenizer to count with (tests).

    Raises:
        ValueError: on a missing or malformed dataset file (the message names it, and the line).
    """
    source = params.get("source", "cnn")
    if source != "cnn":
        return _load_source(source, params, hf_tokenizer)
    data_dir = params.get("data_dir")
    tokenizer = params.get("tokenizer") or DEFAULT_TOKENIZER
    if data_dir is None and not params.get("dataset_file"):
        path = demo_dir() / "cnn_eval.json"
        tokenizer = BYTES_TOKENIZER
    else:
        f = params.get("dataset_file") or "cnn_eval.json"
        path = Path(f) if data_dir is None or os.path.isabs(f) else Path(data_dir) / f
    records = read_records(path)
    count = params.get("count")
    if count is not None:
        records = records[: int(count)]
    return LLMLibrary(
        records,
        prompt=params.get("prompt", "tokens"),
        max_tokens=int(params.get("max_tokens", 128)),
        performance_count=params.get("performance_count"),
        tokenizer=tokenizer,
        ignore_eos=bool(params.get("ignore_eos", False)),
    )


def _sub(params: dict[str, Any], key: str) -> dict[str, Any]:
    """A source's block of params, validated (``load_library`` may be called with a partial dict)."""
    from workloads.llm.params import LLMParams

    return LLMParams.model_validate({key: params.get(key) or {}}).model_dump()[key]


def _load_source(source: str, params: dict[str, Any], hf_tokenizer: Any) -> LLMLibrary:
    tok = get_tokenizer(params.get("tokenizer"), hf_tokenizer)
    max_tokens = int(params.get("max_tokens", 128))
    path = Path(params["path"]) if params.get("path") else None
    text = params.get("prompt", "tokens") == "text"
    arrival = None
    if source == "synthetic":
        records = synthetic_records(tok, _sub(params, "synthetic"), text)
    elif source == "shared_prefix":
        records = shared_prefix_records(tok, _sub(params, "shared_prefix"), text)
    elif source == "sharegpt":
        sp = _sub(params, "sharegpt")
        rows, _ = read_sharegpt(path or source_demo("sharegpt"), sp["turns"])
        records = []
        for r in rows:
            rec: dict[str, Any] = {"input": r["prompt"], "tok_input": tok.encode(r["prompt"]), "output": r["output"]}
            if sp["turns"] == "all":
                rec["messages"] = r["messages"]
            rec["max_tokens"] = max(1, tok.count(r["output"])) if sp["output_len"] == "reference" else max_tokens
            records.append(rec)
    elif source == "hf":
        records = []
        for r in read_hf_rows(path or source_demo("hf"), _sub(params, "hf")["columns"]):
            p = r["prompt"]
            rec = {"messages": p} if isinstance(p, list) else {"input": p, "tok_input": tok.encode(p)}
            rec["output"] = r.get("output", "")
            rec["max_tokens"] = r.get("max_tokens", max_tokens)
            records.append(rec)
    elif source == "trace":
        tp = _sub(params, "trace")
        rows = read_trace(path or source_demo("trace"))
        records = trace_records(tok, rows, tp["block_size"], tp["seed"], text)
        arrival = np.floor(np.asarray([r["timestamp"] for r in rows], dtype=np.float64) * 1e6).astype(np.int64)
    else:
        raise ValueError(f"workload.params.source: unknown source {source!r}")
    count = params.get("count")
    if count is not None:
        records = records[: int(count)]
        arrival = arrival[: int(count)] if arrival is not None else None
    if not records:
        raise ValueError(f"workload.params.source: the {source} dataset has no usable samples")
    return LLMLibrary(records, name=f"llm-{source}", prompt=params.get("prompt", "tokens"), max_tokens=max_tokens,
                      performance_count=params.get("performance_count"), tokenizer=tok.name, tok=tok,
                      ignore_eos=bool(params.get("ignore_eos", False)), arrival_ns=arrival)


def source_demo(source: str) -> Path:
    """A small generated demo file of ``source`` (``sharegpt``, ``hf``, ``trace``) in the cache."""
    name = {"sharegpt": "sharegpt.json", "hf": "prompts.parquet", "trace": "trace.jsonl"}[source]

    def build(d: Path) -> None:
        rng = random.Random(20261130)
        words = [w for s in _SUBJECTS + _VERBS + _OBJECTS for w in s.lower().split()]

        def text(n: int) -> str:
            return " ".join(rng.choice(words) for _ in range(n))

        if source == "sharegpt":
            recs = [{"id": f"demo-{i}", "conversations": [
                {"from": "human", "value": f"Tell me about {text(rng.randint(3, 12))}."},
                {"from": "gpt", "value": text(rng.randint(5, 30))},
                {"from": "human", "value": f"And {text(3)}?"},
                {"from": "gpt", "value": text(rng.randint(5, 20))}]} for i in range(16)]
            (d / name).write_text(json.dumps(recs, indent=1), encoding="utf-8")
        elif source == "hf":
            import pyarrow as pa
            import pyarrow.parquet as pq

            prompts = [f"Question {i}: what about {text(rng.randint(3, 10))}?" for i in range(16)]
            pq.write_table(pa.table({"prompt": prompts, "output": [text(6) for _ in prompts]}), d / name)
        else:
            t, lines = 0, []
            for i in range(32):
                t += rng.randint(0, 400)
                n = rng.randint(1, 4)
                base = [0, 1] if i % 2 else [2]
                lines.append(json.dumps({"timestamp": t, "input_length": 64 * n - rng.randint(0, 63),
                                         "output_length": rng.randint(8, 64), "hash_ids": base + [100 + i] * (n > 2)}))
            (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    return build_once(f"llm-{source}-demo-{SOURCE_DEMO_VERSION}", build, name) / name
