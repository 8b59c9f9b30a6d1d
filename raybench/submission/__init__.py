"""From runs to an MLPerf submission: accuracy-log truncation, the submission tree, peak search.

* :mod:`raybench.submission.truncate`: the submission tools' accuracy-log truncation (head and
  tail kept, the full log's SHA-256 appended to ``accuracy.txt``);
* :mod:`raybench.submission.package`: ``raybench package``: run directories + a system
  description -> the v6.0 submission layout the official checker walks;
* :mod:`raybench.submission.peak`: ``raybench search-peak``: LoadGen's FindPeakPerformance
  search (boundary widening, then bisection to the configured precision), one full run per probe.
"""

from __future__ import annotations

__all__: list[str] = []
