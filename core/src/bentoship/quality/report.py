"""The report of a quality check: the serving revision's figure, its baseline, the verdict,
and the figures per revision and time bucket it was judged from."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["QualityReport"]


@dataclass(frozen=True)
class QualityReport:
    deployment: str
    monitor: str
    metric: str
    serving: str | None
    """The serving revision's name (``r3``)."""
    value: float | None
    interval: tuple[float, float] | None
    labels: int
    coverage: float | None
    baseline: str
    """What it was compared with: a revision's name, ``training``, or ``a number``."""
    baseline_value: float | None
    verdict: str
    """``passed``, ``failed`` or ``not_enough_evidence``."""
    reason: str
    rolled_back_to: str | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    """The control plane's figures per revision and bucket (``GET …/quality``)."""

    @property
    def failed(self) -> bool:
        return self.verdict == "failed"

    def summary(self) -> str:
        line = f"quality of {self.deployment} {self.serving or '(nothing serves)'}: {self.verdict}"
        line += f": {self.reason}"
        if self.rolled_back_to:
            line += f"; rolled back to {self.rolled_back_to}"
        return line

    def html(self) -> str:
        """The report as one self-contained HTML page."""
        from .page import render_quality

        return render_quality(self)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["interval"] = list(self.interval) if self.interval else None
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityReport:
        interval = data.get("interval")
        return cls(
            **{
                **data,
                "interval": (float(interval[0]), float(interval[1])) if interval else None,
                "quality": dict(data.get("quality") or {}),
            }
        )
