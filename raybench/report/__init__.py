"""Reports of a run directory: a self-contained report.html with PNG plots (see ``raybench.report.html``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_report"]


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` for a run directory (implemented in ``raybench.report.html``).

    A peak-search directory (``peak_summary.json``) gets the search's page (``raybench.report.peak``).
    """
    if (Path(run_dir) / "peak_summary.json").is_file():
        from raybench.report.peak import write_peak_report

        return write_peak_report(run_dir)[0]
    from raybench.report.html import write_report as _write

    return _write(Path(run_dir))
