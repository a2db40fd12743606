"""Shadow traffic: compare a candidate revision's answers with the serving revision's.

:func:`compare_answers` judges one pair of JSON answers (:mod:`.compare`). A
:class:`ShadowReport`, made of :class:`ShadowPair` records by :func:`shadow_report`, gives the
agreement rate and its interval, label flips, numeric differences, and both revisions' errors
and latency, as JSON or as one self-contained HTML page (:func:`render_report`). The report
needs NumPy and scipy (the ``drift`` extra); :func:`compare_answers` needs neither.
"""

from .analysis import ShadowAnalysis
from .compare import DEFAULT_TOLERANCE, compare_answers
from .many import compare_many
from .page import render_report
from .pairs import ShadowPair
from .policy import ShadowPolicy, ShadowVerdict, judge_shadow
from .report import Agreement, Differences, Latency, RevisionFigures, ShadowReport
from .tally import shadow_report

__all__ = [
    "DEFAULT_TOLERANCE",
    "Agreement",
    "Differences",
    "Latency",
    "RevisionFigures",
    "ShadowAnalysis",
    "ShadowPair",
    "ShadowPolicy",
    "ShadowReport",
    "ShadowVerdict",
    "compare_answers",
    "compare_many",
    "judge_shadow",
    "render_report",
    "shadow_report",
]
