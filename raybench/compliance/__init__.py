"""MLPerf compliance tests (TEST01, TEST04, TEST06, TEST07, TEST08, TEST09) for raybench runs.

:mod:`~raybench.compliance.catalog` holds each test's audit.config values and where it applies,
:mod:`~raybench.compliance.verify` the official verification rules, and
:mod:`~raybench.compliance.runner` the command that runs a test and writes ``DIR/TESTxx/``.
"""

from raybench.compliance.catalog import TESTS, ComplianceRefused, audit_config_text, refusal
from raybench.compliance.runner import ComplianceOptions, ComplianceOutcome, run_compliance

__all__ = ["TESTS", "ComplianceOptions", "ComplianceOutcome", "ComplianceRefused", "audit_config_text", "refusal",
           "run_compliance"]
