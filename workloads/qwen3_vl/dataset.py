"""Sample library for the Shopify product catalogue (``Shopify/product-catalogue``).

Reads a local copy of the dataset — no hub access, no ``datasets`` dependency:

* Parquet shards as the hub stores them: every ``*.parquet`` under ``data_dir`` whose name
  starts with ``<split>-`` or is ``<split>.parquet``, or that lies in a folder named
  ``<split>``; shards are taken in sorted path order;
* or a ``datasets.DatasetDict.save_to_disk`` folder: ``<data_dir>/<split>/state.json`` plus
  Arrow stream files, read with pyarrow memory maps.

Splits are concatenated in the configured order (``train`` then ``test`` → 48,289 samples for
the reference revision ``d5c517c``), so sample ``i`` is row ``i`` of that concatenation and
``qsl_idx`` means the same thing as in the reference harness. ``count`` keeps the first
``count`` samples (the reference's ``min(len(dataset), min_query_count)``).

Images are kept as the dataset's original bytes and are never resized. (The reference
re-encodes each image with PIL in its own format before base64; ``reencode_images=True``
reproduces that, e.g. for byte-identical requests. JPEG re-encoding is lossy.)

``get(i)`` returns a picklable dict::

    {"messages": [system, user(text, image_url)]}   # OpenAI chat format, see prompt.py

plus, with ``guided_decoding=True``, ``"params": {"response_format": {json_schema...}}`` (extra
request fields the ``openai_endpoint`` SUT merges into the request). The image travels inside
``messages`` as a base64 data URL, so an OpenAI endpoint SUT forwards ``messages`` as is and
the Transformers SUT decodes the data URL itself.
"""

from __future__ import annotations

import bisect
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raybench.core.cache import build_once

from . import demo, prompt

__all__ = ["COLUMNS", "ProductCatalogueLibrary", "demo_dir", "load_library"]

COLUMNS = (
    "product_image",
    "product_title",
    "product_description",
    "potential_product_categories",
    "ground_truth_category",
    "ground_truth_brand",
    "ground_truth_is_secondhand",
)
_GT_COLUMNS = [
    "ground_truth_category",
    "ground_truth_brand",
    "ground_truth_is_secondhand",
    # Not an answer, but the scorer needs it: the reference's random baseline draws one of these
    # per entry, which moves the random is_secondhand of unparsable answers (accuracy.py).
    "potential_product_categories",
]
_REQUEST_COLUMNS = ["product_image", "product_title", "product_description", "potential_product_categories"]


@dataclass(frozen=True)
class _Chunk:
    """A unit of rows read together: one Parquet row group or one Arrow stream file."""

    path: Path
    row_group: int  # -1 for an Arrow stream file
    n_rows: int


def _parquet_shards(root: Path, split: str) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*.parquet")):
        rel_dirs = p.relative_to(root).parts[:-1]
        if p.name.startswith(f"{split}-") or p.name == f"{split}.parquet" or split in rel_dirs:
            out.append(p)
    return out


def _chunks_for_split(root: Path, split: str) -> list[_Chunk]:
    import pyarrow.parquet as pq

    shards = _parquet_shards(root, split)
    if shards:
        chunks = []
        for shard in shards:
            meta = pq.ParquetFile(shard).metadata
            _check_columns(shard, meta.schema.to_arrow_schema().names)
            chunks += [_Chunk(shard, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        return chunks
    state = root / split / "state.json"
    if state.is_file():
        try:
            files = [f["filename"] for f in json.loads(state.read_text())["_data_files"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{state}: not a datasets save_to_disk state file ({exc})") from None
        chunks = []
        for name in files:
            table = _read_arrow(root / split / name)
            _check_columns(root / split / name, table.schema.names)
            chunks.append(_Chunk(root / split / name, -1, table.num_rows))
        return chunks
    raise FileNotFoundError(
        f"qwen3_vl: no Parquet shards ('{split}-*.parquet') or datasets folder ('{split}/state.json') "
        f"for split {split!r} under {root}"
    )


def _check_columns(path: Path, names: Sequence[str]) -> None:
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; expected the Shopify/product-catalogue columns"
        )


def _read_arrow(path: Path) -> Any:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


def demo_dir(n: int, seed: int = 0) -> Path:
    """The cached demo catalogue of ``n`` samples, generated on first use (race-free)."""
    return build_once(f"qwen3_vl-demo-v{demo.DEMO_VERSION}-n{n}-s{seed}", lambda d: demo.write_demo(d, n, seed), "data")


class ProductCatalogueLibrary:
    """MLPerf QSL over the Shopify product catalogue (see the module docstring).

    Ground-truth columns (small) are read at construction; request columns (images, texts)
    are read per Parquet row group in :meth:`load`, so a loaded set of 48,289 samples costs
    about what the reference's ~6.4 GB of host memory costs, and a small one costs little.

    Example:
        >>> lib = load_library({"data_dir": None, "demo_samples": 8})   # doctest: +SKIP
        >>> lib.load([0]); lib.get(0)["messages"][1]["content"][1]["type"]   # doctest: +SKIP
        'image_url'
    """

    name = "qwen3_vl"

    def __init__(
        self,
        data_dir: str | Path,
        splits: Sequence[str] = ("train", "test"),
        count: int | None = None,
        performance_count: int | None = None,
        guided_decoding: bool = False,
        reencode_images: bool = False,
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"qwen3_vl: data_dir {root} is not a directory")
        if isinstance(splits, str) or not splits:
            raise ValueError(f"qwen3_vl: splits must be a non-empty list of split names, got {splits!r}")
        self.root = root
        self._chunks: list[_Chunk] = [c for s in splits for c in _chunks_for_split(root, s)]
        self._starts: list[int] = []
        n = 0
        for c in self._chunks:
            self._starts.append(n)
            n += c.n_rows
        gt_tables = []
        for path in dict.fromkeys(c.path for c in self._chunks):  # each file once, in order
            gt_tables.append(
                pq.read_table(path, columns=_GT_COLUMNS)
                if path.suffix == ".parquet"
                else _read_arrow(path).select(_GT_COLUMNS)
            )
        gt = pa.concat_tables(gt_tables).to_pydict() if gt_tables else {c: [] for c in _GT_COLUMNS}
        self._total = min(n, int(count)) if count is not None else n
        if self._total <= 0:
            raise ValueError(f"qwen3_vl: no samples under {root} for splits {list(splits)} (count={count})")
        self._gt_category: list[str] = gt["ground_truth_category"][: self._total]
        self._gt_brand: list[str] = gt["ground_truth_brand"][: self._total]
        self._gt_secondhand: list[bool] = gt["ground_truth_is_secondhand"][: self._total]
        self._candidates: list[list[str]] = gt["potential_product_categories"][: self._total]
        self._perf = min(self._total, int(performance_count)) if performance_count else self._total
        self.guided_decoding = bool(guided_decoding)
        self.reencode_images = bool(reencode_images)
        self._loaded: dict[int, dict[str, Any]] = {}

    @property
    def total_count(self) -> int:
        return self._total

    @property
    def performance_count(self) -> int:
        return self._perf

    def ground_truth(self, index: int) -> dict[str, Any]:
        """``{"category", "brand", "is_secondhand", "potential_product_categories"}`` of sample
        ``index`` (no I/O; the candidate list is the one the prompt shows, in the dataset's order).

        Raises:
            ValueError: the sample's ``potential_product_categories`` is not a list of strings.
        """
        self._check(index)
        candidates = self._candidates[index]
        if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
            raise ValueError(
                f"{self.root}: sample {index}: potential_product_categories must be a list of strings, "
                f"got {type(candidates).__name__}"
            )
        return {
            "category": self._gt_category[index],
            "brand": self._gt_brand[index],
            "is_secondhand": bool(self._gt_secondhand[index]),
            "potential_product_categories": list(candidates),
        }

    def _check(self, index: int) -> None:
        if not 0 <= index < self._total:
            raise IndexError(f"qwen3_vl: sample index {index} out of range [0, {self._total})")

    def _read_chunk(self, chunk: _Chunk) -> Any:
        import pyarrow.parquet as pq

        if chunk.row_group >= 0:
            return pq.ParquetFile(chunk.path).read_row_group(chunk.row_group, columns=_REQUEST_COLUMNS)
        return _read_arrow(chunk.path).select(_REQUEST_COLUMNS)

    def load(self, indices: Sequence[int]) -> None:
        """Read and format the requests of ``indices`` (each row group is read once)."""
        by_chunk: dict[int, list[int]] = {}
        for i in dict.fromkeys(int(i) for i in indices):
            self._check(i)
            if i not in self._loaded:
                by_chunk.setdefault(bisect.bisect_right(self._starts, i) - 1, []).append(i)
        for ci, idxs in by_chunk.items():
            chunk = self._chunks[ci]
            rows = self._read_chunk(chunk).take([i - self._starts[ci] for i in idxs]).to_pylist()
            for i, row in zip(idxs, rows, strict=True):
                self._loaded[i] = self._format(i, row, chunk.path)

    def _format(self, index: int, row: dict[str, Any], path: Path) -> dict[str, Any]:
        image = row["product_image"] or {}
        data = image.get("bytes")
        if data is None and image.get("path"):
            img_path = Path(image["path"])
            data = (img_path if img_path.is_absolute() else path.parent / img_path).read_bytes()
        if not data:
            raise ValueError(f"{path}: sample {index} has no product_image bytes")
        data, fmt = _image_format(data, self.reencode_images)
        messages = prompt.build_messages(
            row["product_title"], row["product_description"], row["potential_product_categories"], data, fmt
        )
        payload: dict[str, Any] = {"messages": messages}
        if self.guided_decoding:
            payload["params"] = {"response_format": prompt.response_format()}
        return payload

    def unload(self, indices: Sequence[int]) -> None:
        for i in indices:
            self._loaded.pop(int(i), None)

    def get(self, index: int) -> dict[str, Any]:
        """The loaded request of sample ``index`` (see the module docstring)."""
        try:
            return self._loaded[index]
        except KeyError:
            raise KeyError(f"qwen3_vl: sample {index} is not loaded (call load() first)") from None


def _image_format(data: bytes, reencode: bool) -> tuple[bytes, str]:
    """PIL's format name of ``data`` (what the reference puts in the data URL), optionally re-encoded."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format or "JPEG"
        if not reencode:
            return data, fmt
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        return buf.getvalue(), fmt


def load_library(params: dict[str, Any]) -> ProductCatalogueLibrary:
    """Build the library from workload params.

    Params:
        data_dir: local dataset copy; ``None`` → the cached demo catalogue (``demo_samples``
            rows, default 32, seed ``demo_seed``).
        splits: split names, concatenated in order (default ``["train", "test"]``).
        count: keep only the first ``count`` samples.
        performance_count: samples held in memory in a performance run (default all).
        guided_decoding, reencode_images: see the module docstring.
    """
    data_dir = params.get("data_dir")
    if data_dir is None:
        data_dir = demo_dir(int(params.get("demo_samples", 32)), int(params.get("demo_seed", 0)))
    return ProductCatalogueLibrary(
        data_dir,
        splits=params.get("splits", ("train", "test")),
        count=params.get("count"),
        performance_count=params.get("performance_count"),
        guided_decoding=bool(params.get("guided_decoding", False)),
        reencode_images=bool(params.get("reencode_images", False)),
    )
