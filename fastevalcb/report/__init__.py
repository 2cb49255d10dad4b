"""A static HTML report of an offline run's prediction tables (``fastevalcb report``).

Example:
    >>> from fastevalcb.report import build_report
    >>> build_report("wandb/offline-run-20260101_120000-abc123", "report.html")
"""

from fastevalcb.report.build import ReportError, build_report, open_run

__all__ = ["ReportError", "build_report", "open_run"]
