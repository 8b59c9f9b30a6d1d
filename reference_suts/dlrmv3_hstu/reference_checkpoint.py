"""The reference DLRMv3 checkpoint on disk: write it (tiny test checkpoints) and stream it.

Layout, as ``recommendation/dlrm_v3/checkpoint.py`` writes and reads it (``path`` is the
directory passed as ``--model-path``; training writes one per ``<batch_idx>``):

* ``path/non_sparse.ckpt`` — ``torch.save`` of ``{"dense_dict": <every state-dict entry but
  the tables>, "optimizer_dict", "class_metrics", "reg_metrics", "global_step",
  "sparse_tensor_keys"}``;
* ``path/sparse/`` — a ``torch.distributed.checkpoint`` (DCP) directory (``.metadata`` plus
  ``__<rank>_<n>.distcp`` files) of ``{"sparse_dict": <the table entries>}``, so a table's key
  is ``sparse_dict._embedding_collection.embeddings.<table>.weight``; each saved chunk (one per
  training shard of the table) is a ``torch.save`` archive at a byte range of a ``.distcp`` file.

Streaming: :func:`read_table_rows` maps the chunks that overlap a row range straight from the
``.distcp`` files (``numpy.memmap`` of the stored tensor bytes inside each archive) and copies
only those rows (64 MiB at a time), so an embedding-shard actor holding rows ``[a, b)`` ends
with ``(b - a) x dim`` FP16 values in its memory and never reads the rest of the table.
"""

from __future__ import annotations

import io
import math
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["DENSE_FILE", "SPARSE_DIR", "checkpoint_files", "dense_state_dict", "full_state_dict", "read_table_rows",
           "save_reference_checkpoint", "table_key", "table_shape"]

DENSE_FILE = "non_sparse.ckpt"
SPARSE_DIR = "sparse"
_SPARSE_PREFIX = "sparse_dict."
_SLAB_BYTES = 64 << 20      # rows copied out of a memory map at a time


def table_key(name: str) -> str:
    """State-dict key of a table (``_embedding_collection.embeddings.<name>.weight``)."""
    return f"_embedding_collection.embeddings.{name}.weight"


def _is_sparse(key: str) -> bool:
    return "embedding_collection" in key          # the reference's is_sparse_key


def save_reference_checkpoint(model: torch.nn.Module, path: str | Path) -> Path:
    """Write ``model``'s state dict in the reference layout (``path/non_sparse.ckpt`` +
    ``path/sparse/``). Returns ``path``."""
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    sparse = {k: v.detach().contiguous() for k, v in state.items() if _is_sparse(k)}
    dense = {k: v.detach() for k, v in state.items() if not _is_sparse(k)}
    torch.save({"dense_dict": dense, "optimizer_dict": {}, "class_metrics": {"train": [], "eval": []},
                "reg_metrics": {"train": [], "eval": []}, "global_step": 0,
                "sparse_tensor_keys": set(sparse)}, path / DENSE_FILE)
    with warnings.catch_warnings():      # one process writes every chunk: DCP says so in a warning
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save({"sparse_dict": sparse}, storage_writer=dcp.FileSystemWriter(str(path / SPARSE_DIR)),
                 no_dist=True)
    return path


def dense_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """``dense_dict`` of ``path/non_sparse.ckpt`` (``ValueError`` naming the file)."""
    file = Path(path) / DENSE_FILE
    try:
        blob = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        return dict(blob["dense_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, ValueError) as exc:
        raise ValueError(f"dlrmv3_reference: cannot read dense_dict of {file}: {exc}".splitlines()[0]) from exc


def _metadata(path: str | Path) -> Any:
    import torch.distributed.checkpoint as dcp

    sparse = Path(path) / SPARSE_DIR
    try:
        return dcp.FileSystemReader(str(sparse)).read_metadata()
    except Exception as exc:  # noqa: BLE001 - any unreadable metadata is one line naming the file
        raise ValueError(f"dlrmv3_reference: cannot read {sparse / '.metadata'}: {exc}".splitlines()[0]) from exc


def _table_meta(md: Any, path: str | Path, name: str) -> tuple[str, Any]:
    for fqn in (_SPARSE_PREFIX + table_key(name), table_key(name)):
        if fqn in md.state_dict_metadata:
            return fqn, md.state_dict_metadata[fqn]
    raise ValueError(f"dlrmv3_reference: table {name!r} ({table_key(name)}) is not in "
                     f"{Path(path) / SPARSE_DIR / '.metadata'}")


def table_shape(path: str | Path, name: str) -> tuple[int, int, torch.dtype]:
    """``(rows, dim, dtype)`` of a stored table, from the DCP metadata only."""
    _, meta = _table_meta(_metadata(path), path, name)
    rows, dim = (int(s) for s in meta.size)
    return rows, dim, meta.properties.dtype


class _Slice(io.RawIOBase):
    """A read-only, seekable window ``[start, start + length)`` of a file (for ``zipfile``)."""

    def __init__(self, f: Any, start: int, length: int) -> None:
        self.f, self.start, self.length, self.pos = f, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.length + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self.length - self.pos))
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _chunk_array(file: Path, start: int, length: int, shape: tuple[int, ...], dtype: torch.dtype) -> np.ndarray:
    """Memory-map the tensor stored by ``torch.save`` at ``file[start:start+length]``."""
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    with open(file, "rb") as f:
        z = zipfile.ZipFile(_Slice(f, start, length))
        entries = [i for i in z.infolist() if re.search(r"/data/\d+$", i.filename)]
        if len(entries) != 1 or entries[0].compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"dlrmv3_reference: {file} at byte {start}: expected one stored tensor, found "
                             f"{[i.filename for i in entries]}")
        info = entries[0]
        f.seek(start + info.header_offset)
        header = f.read(30)
        if header[:4] != b"PK\x03\x04":
            raise ValueError(f"dlrmv3_reference: {file} at byte {start + info.header_offset}: bad zip entry")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
    want = math.prod(shape) * np_dtype.itemsize
    if info.file_size != want:
        raise ValueError(f"dlrmv3_reference: {file} chunk at byte {start} holds {info.file_size} bytes, "
                         f"expected {want} for shape {list(shape)} {dtype}")
    offset = start + info.header_offset + 30 + name_len + extra_len
    return np.memmap(file, dtype=np_dtype, mode="r", offset=offset, shape=shape)


def read_table_rows(path: str | Path, name: str, start: int, stop: int) -> torch.Tensor:
    """Rows ``[start, stop)`` of table ``name`` (own memory, the table's dtype), read through
    memory maps of the chunks that overlap them (row-, column- or table-wise chunks).

    Raises:
        ValueError: a missing table, a range outside it, or a chunk not where the metadata says.
    """
    md = _metadata(path)
    fqn, meta = _table_meta(md, path, name)
    rows, dim = (int(s) for s in meta.size)
    if not 0 <= start <= stop <= rows:
        raise ValueError(f"dlrmv3_reference: rows [{start}, {stop}) outside table {name!r} of {rows} rows")
    out = torch.empty((stop - start, dim), dtype=meta.properties.dtype)
    covered = 0
    for idx, info in md.storage_data.items():
        if idx.fqn != fqn:
            continue
        r0, c0 = (int(o) for o in idx.offset)
        chunk = next(c for c in meta.chunks if tuple(int(o) for o in c.offsets) == (r0, c0))
        nr, nc = (int(s) for s in chunk.sizes)
        a, b = max(start, r0), min(stop, r0 + nr)
        if a >= b:
            continue
        if getattr(info, "transform_descriptors", None):
            raise ValueError(f"dlrmv3_reference: {Path(path) / SPARSE_DIR / info.relative_path}: chunk of {name!r} "
                             f"is stored transformed ({info.transform_descriptors}); only plain chunks can be mapped")
        arr = _chunk_array(Path(path) / SPARSE_DIR / info.relative_path, int(info.offset), int(info.length),
                           (nr, nc), meta.properties.dtype)
        step = max(1, _SLAB_BYTES // max(1, nc * arr.itemsize))      # bounded temporary copies
        for x in range(a, b, step):
            y = min(b, x + step)
            out[x - start:y - start, c0:c0 + nc] = torch.from_numpy(np.array(arr[x - r0:y - r0]))
        covered += (b - a) * nc
        del arr
    if covered != (stop - start) * dim:
        raise ValueError(f"dlrmv3_reference: the chunks of {name!r} in {Path(path) / SPARSE_DIR} cover "
                         f"{covered} of {(stop - start) * dim} values of rows [{start}, {stop})")
    return out


def full_state_dict(path: str | Path, tables: tuple[str, ...] = ("item_id", "item_category_id", "user_id")
                    ) -> dict[str, torch.Tensor]:
    """The whole state dict (dense entries + every table, materialised): small checkpoints only."""
    state = dense_state_dict(path)
    for name in tables:
        rows, _, _ = table_shape(path, name)
        state[table_key(name)] = read_table_rows(path, name, 0, rows)
    return state


def checkpoint_files(path: str | Path) -> list[str]:
    """Files of a checkpoint directory, relative, sorted (for docs and checks)."""
    root = Path(path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []

