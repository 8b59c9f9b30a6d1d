"""raybench: MLPerf-style inference benchmarking at cluster scale on Ray."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
