"""Data drift between a reference (the training data) and current data (a service's traffic).

``check_drift`` (in :mod:`bentoship.steps`) reads both sides, compares each column
(:mod:`.compare`, with the tests of :mod:`.statistics`) and returns a :class:`DriftReport`,
which :func:`render_report` renders as one self-contained HTML page. Needs the ``drift``
extra (numpy, scipy).
"""

from .page import render_report
from .report import ColumnDrift, DriftReport, DriftThresholds, Verdict
from .tables import Monitor, SqlQuery

__all__ = [
    "ColumnDrift",
    "DriftReport",
    "DriftThresholds",
    "Monitor",
    "SqlQuery",
    "Verdict",
    "render_report",
]
