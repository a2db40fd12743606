"""What a drift check found: each column's figures and verdict, and the overall verdict."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from .statistics import Histogram

__all__ = ["ColumnDrift", "DriftReport", "DriftThresholds", "EvidentlyColumn", "Verdict"]


class Verdict(StrEnum):
    DRIFT = "drift"
    NO_DRIFT = "no_drift"
    MISSING = "missing"
    """The column is on one side only: not compared, and not counted unless
    ``missing_as_drift`` (then it counts as drifted: the data's schema changed)."""
    EMPTY = "empty"
    """One side has no value in this column but nulls (not counted either way)."""


@dataclass(frozen=True)
class DriftThresholds:
    """When a column, and the whole dataset, count as drifted.

    - ``p_value``: the test (KS for numbers, chi-squared for categories) must be below it;
    - ``psi``: and the population stability index at least this (0.1: a moderate shift;
      0.25 and more: a large one);
    - ``share``: the dataset drifts when at least this share of its columns drift.
    """

    p_value: float = 0.05
    psi: float = 0.1
    share: float = 0.5

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        if not (0 < self.p_value < 1 and self.psi >= 0 and 0 < self.share <= 1):
            raise ConfigError(
                "drift thresholds: p_value must be in (0, 1), psi >= 0 and share in (0, 1]; "
                f"got p_value={self.p_value}, psi={self.psi}, share={self.share}"
            )


@dataclass(frozen=True)
class ColumnDrift:
    name: str
    kind: str
    """``numeric`` or ``categorical``."""
    verdict: Verdict
    test: str | None = None
    """``ks`` or ``chi2``."""
    statistic: float | None = None
    p_value: float | None = None
    psi: float | None = None
    reference_count: int = 0
    current_count: int = 0
    reference_nulls: int = 0
    current_nulls: int = 0
    histogram: Histogram | None = None
    only_in: str | None = None
    """For a missing column, the side that has it: ``reference`` or ``current``."""
    missing_as_drift: bool = False
    """For a missing column, whether it counts as drifted (``missing_as_drift=True``)."""

    @property
    def drifted(self) -> bool:
        return self.verdict == Verdict.DRIFT or (
            self.verdict == Verdict.MISSING and self.missing_as_drift
        )

    @property
    def counted(self) -> bool:
        """Whether the column counts in the share of drifted columns: tested, or counted as
        drifted."""
        return self.verdict in (Verdict.DRIFT, Verdict.NO_DRIFT) or self.drifted


@dataclass(frozen=True)
class EvidentlyColumn:
    """A column's verdict under Evidently's default drift preset (``check_drift(evidently=True)``).

    Evidently picks the method by type and size: KS or chi-squared p-values up to 1,000 rows,
    Wasserstein (numbers) or Jensen-Shannon (categories) distances above.
    """

    name: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    columns: list[ColumnDrift]
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    reference_rows: int = 0
    current_rows: int = 0
    evidently: list[EvidentlyColumn] | None = None
    """Evidently's verdicts on the same columns, when asked for (``evidently=True``)."""

    @property
    def drifted_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.drifted]

    @property
    def compared_columns(self) -> list[str]:
        """The columns on both sides, which were compared."""
        return [c.name for c in self.columns if c.verdict != Verdict.MISSING]

    @property
    def missing_columns(self) -> list[str]:
        """The columns on one side only (each column's ``only_in`` says which)."""
        return [c.name for c in self.columns if c.verdict == Verdict.MISSING]

    def column(self, name: str) -> ColumnDrift:
        """The column called ``name`` (KeyError if the report has none)."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def evidently_agreeing(self) -> int:
        """On how many columns Evidently's verdict is ours (0 without Evidently's verdicts)."""
        return sum(c.drifted == self.column(c.name).drifted for c in self.evidently or ())

    @property
    def share_drifted(self) -> float:
        judged = [c for c in self.columns if c.counted]
        return sum(c.drifted for c in judged) / len(judged) if judged else 0.0

    @property
    def drifted(self) -> bool:
        return bool(self.columns) and self.share_drifted >= self.thresholds.share

    def summary(self) -> str:
        """One line: the verdict, the drifted columns, the compared and the missing ones."""
        verdict = "drift" if self.drifted else "no drift"
        named = ", ".join(self.drifted_columns) or "none"
        counted = sum(c.counted for c in self.columns)
        line = (
            f"{verdict}: {len(self.drifted_columns)} of {counted} columns drifted "
            f"({self.share_drifted:.0%}; threshold {self.thresholds.share:.0%}): {named}; "
            f"compared: {', '.join(self.compared_columns) or 'none'}"
        )
        missing = [c for c in self.columns if c.verdict == Verdict.MISSING]
        if not missing:
            return line
        counts = "counted" if any(c.drifted for c in missing) else "not counted"
        sides = ", ".join(f"{c.name} ({c.only_in or 'one side'} only)" for c in missing)
        return f"{line}; missing ({counts} as drifted): {sides}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "share_drifted": self.share_drifted,
            "drifted_columns": self.drifted_columns,
            "compared_columns": self.compared_columns,
            "missing_columns": self.missing_columns,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "thresholds": asdict(self.thresholds),
            "columns": [
                {**asdict(c), "verdict": str(c.verdict), "drifted": c.drifted} for c in self.columns
            ],
            "evidently": None if self.evidently is None else [asdict(c) for c in self.evidently],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        columns = []
        for item in data["columns"]:
            fields = {k: v for k, v in item.items() if k != "drifted"}
            histogram = fields.pop("histogram", None)
            columns.append(
                ColumnDrift(
                    **{**fields, "verdict": Verdict(fields["verdict"])},
                    histogram=Histogram(**histogram) if histogram else None,
                )
            )
        return cls(
            columns=columns,
            thresholds=DriftThresholds(**data["thresholds"]),
            reference_rows=data["reference_rows"],
            current_rows=data["current_rows"],
            evidently=None
            if data.get("evidently") is None
            else [EvidentlyColumn(**c) for c in data["evidently"]],
        )
