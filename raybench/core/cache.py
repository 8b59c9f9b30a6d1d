"""The local cache of generated demo data and tiny models, built once and race-free.

Everything raybench generates for runs without downloads (demo datasets, tiny random models)
lives under ``$RAYBENCH_CACHE`` (default ``~/.cache/raybench``). :func:`build_once` builds an
entry into a temporary directory next to it and renames it into place, so several shards or
replicas that start at once never see a half-written entry.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["build_once", "cache_root"]


def cache_root() -> Path:
    """``$RAYBENCH_CACHE``, or ``~/.cache/raybench``."""
    return Path(os.environ.get("RAYBENCH_CACHE", "~/.cache/raybench")).expanduser()


def build_once(name: str, build: Callable[[Path], None], marker: str, root: str | Path | None = None) -> Path:
    """The cache directory ``name``, calling ``build(tmp_dir)`` on first use.

    Args:
        name: directory name under the cache root (put a version in it).
        build: writes the entry's files into the directory it is given.
        marker: a path inside the entry whose existence means the entry is complete.
        root: cache root (default :func:`cache_root`).
    """
    base = Path(root).expanduser() if root is not None else cache_root()
    final = base / name
    if (final / marker).exists():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=base))
    try:
        build(tmp)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first: its copy is identical
            if not (final / marker).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
