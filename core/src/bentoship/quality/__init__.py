"""Model quality: the policy a serving revision's quality is held to, the report of a check, and
its page. The figures come from the control plane's ``GET …/quality`` (labels joined to
predictions); :func:`bentoship.steps.check_quality` runs the check."""

from .page import render_quality
from .policy import HIGHER_IS_BETTER, METRICS, QualityPolicy, QualityVerdict, judge_quality
from .report import QualityReport

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "QualityPolicy",
    "QualityReport",
    "QualityVerdict",
    "judge_quality",
    "render_quality",
]
