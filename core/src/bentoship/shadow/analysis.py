"""The outcome of a shadow analysis: the verdict, why, and the report of the pairs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .page import render_report
from .policy import ShadowPolicy
from .report import ShadowReport

__all__ = ["ShadowAnalysis"]


@dataclass(frozen=True)
class ShadowAnalysis:
    """``verdict`` is ``promoted``, ``discarded`` or ``stopped`` (the candidate left first)."""

    deployment: str
    candidate: str | None
    baseline: str | None
    verdict: str
    reason: str
    report: ShadowReport | None = None
    policy: ShadowPolicy = field(default_factory=ShadowPolicy)

    @property
    def promoted(self) -> bool:
        return self.verdict == "promoted"

    def html(self) -> str:
        """The report as one self-contained HTML page (a page that says why, without pairs)."""
        if self.report is None:
            return (
                "<!doctype html><meta charset=utf-8><title>shadow analysis</title>"
                f"<p>shadow analysis of {self.candidate} ({self.deployment}): {self.verdict}: "
                f"{self.reason}</p>"
            )
        return render_report(self.report)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "verdict": self.verdict,
            "reason": self.reason,
            "report": self.report.to_dict() if self.report is not None else None,
            "policy": self.policy.to_dict(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ShadowAnalysis:
        """From the control plane's analysis route's JSON."""
        report = record.get("report")
        return cls(
            str(record["deployment"]),
            record.get("revision"),
            record.get("baseline"),
            str(record["state"]),
            str(record.get("reason") or ""),
            ShadowReport.from_dict(report) if report else None,
            ShadowPolicy.from_dict(record.get("policy")),
        )
