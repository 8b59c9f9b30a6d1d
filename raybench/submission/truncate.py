"""Accuracy-log truncation as MLCommons' ``tools/submission/truncate_accuracy_log.py`` does it.

The submission checker refuses an ``accuracy/mlperf_log_accuracy.json`` larger than
``MAX_ACCURACY_LOG_SIZE`` (10 KiB) and an ``accuracy.txt`` without a ``hash=<hex>`` line. The
official tool keeps the first and the last ``VIEWABLE_SIZE`` (4096) characters of the log with
``"\\n\\n...\\n\\n"`` between them (4096 + 7 + 4096 = 8199 bytes) and appends
``hash=<sha256 of the full log>`` to ``accuracy.txt``; the full log stays with the submitter
(reviewers may ask for it).

Differences, both on inputs the official tool cannot handle: a log of at most
``2 * VIEWABLE_SIZE + 7`` bytes is kept whole (the official tool would fail to seek before its
start); bytes, not decoded text, are cut, so a non-ASCII log cannot grow past the limit.
A log that already carries a hash and is under the limit is left alone, as the official tool does.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from raybench.core.logs.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["MAX_ACCURACY_LOG_SIZE", "SEPARATOR", "VIEWABLE_SIZE", "TruncateResult", "log_hash",
           "truncate_accuracy_log", "truncated_bytes"]

MAX_ACCURACY_LOG_SIZE = 10 * 1024
"""The checker's limit on a submitted accuracy log, in bytes."""
VIEWABLE_SIZE = 4096
"""Bytes kept from the start and from the end of the log."""
SEPARATOR = b"\n\n...\n\n"
"""What replaces the cut middle."""

_HASH_RE = re.compile(r"^hash=([\w\d]+)$")


@dataclass(frozen=True)
class TruncateResult:
    """What :func:`truncate_accuracy_log` did.

    Attributes:
        sha256: hash of the full log (recorded in ``accuracy.txt``).
        original_size / final_size: bytes before and after.
        truncated: whether the middle was cut.
        already_done: the log already had its hash and was under the limit (nothing changed).
    """

    sha256: str
    original_size: int
    final_size: int
    truncated: bool
    already_done: bool = False


def log_hash(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 4 KiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4096), b""):
            h.update(block)
    return h.hexdigest()


def truncated_bytes(data: bytes) -> bytes:
    """``data`` cut to its first and last ``VIEWABLE_SIZE`` bytes (whole if it is already that short)."""
    if len(data) <= 2 * VIEWABLE_SIZE + len(SEPARATOR):
        return data
    return data[:VIEWABLE_SIZE] + SEPARATOR + data[-VIEWABLE_SIZE:]


def _recorded_hash(accuracy_txt: Path) -> str | None:
    if not accuracy_txt.exists():
        return None
    for line in accuracy_txt.read_text(errors="replace").splitlines():
        m = _HASH_RE.match(line)
        if m:
            return m.group(1)
    return None


def truncate_accuracy_log(log: str | Path, accuracy_txt: str | Path) -> TruncateResult:
    """Truncate ``log`` in place and append ``hash=<sha256 of the full log>`` to ``accuracy_txt``.

    Both files are rewritten atomically; run it on a copy (``raybench package`` does), the
    untruncated log is the one to keep.

    Raises:
        FileNotFoundError: ``log`` or ``accuracy_txt`` is missing (one line naming it).
    """
    log, accuracy_txt = Path(log), Path(accuracy_txt)
    if not log.is_file():
        raise FileNotFoundError(f"accuracy log {log} not found")
    if not accuracy_txt.is_file():
        raise FileNotFoundError(f"{accuracy_txt} not found: score the accuracy run first (raybench accuracy ...)")
    size = log.stat().st_size
    recorded = _recorded_hash(accuracy_txt)
    if recorded and size <= MAX_ACCURACY_LOG_SIZE:
        return TruncateResult(recorded, size, size, truncated=False, already_done=True)
    digest = log_hash(log)
    text = accuracy_txt.read_text()
    if text and not text.endswith("\n"):
        text += "\n"
    atomic_write_text(accuracy_txt, text + f"hash={digest}\n")
    data = log.read_bytes()
    cut = truncated_bytes(data)
    if cut is not data:
        atomic_write_bytes(log, cut)
    return TruncateResult(digest, size, len(cut), truncated=cut is not data)
