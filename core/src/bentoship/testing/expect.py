"""Assertions about a deployed service: golden answers and latency."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..shadow.compare import DEFAULT_TOLERANCE, compare_answers
from .deployments import DeploymentHandle

__all__ = [
    "UPDATE_GOLDEN_ENV",
    "LatencyReport",
    "expect_answers",
    "expect_latency",
    "read_cases",
    "set_update_golden",
]

UPDATE_GOLDEN_ENV = "BENTOSHIP_UPDATE_GOLDEN"
_update_golden = False
measured: list[LatencyReport] = []
"""Every latency measured since the pytest plugin last collected them."""


def set_update_golden(update: bool) -> None:
    """Make :func:`expect_answers` rewrite golden files (``--bentoship-update-golden``)."""
    global _update_golden
    _update_golden = update


def _updating() -> bool:
    return _update_golden or os.environ.get(UPDATE_GOLDEN_ENV, "") not in ("", "0", "false")


def read_cases(path: Path) -> list[dict[str, Any]]:
    """The golden cases of a JSON or YAML file: a list of ``{"input": {...}, "output": ...}``,
    each with an optional ``name``."""
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        cases = yaml.safe_load(text)
    elif path.suffix == ".json":
        cases = json.loads(text)
    else:
        raise ConfigError(f"{path}: golden cases are a .json, .yaml or .yml file")
    return _checked_cases(cases, str(path))


def _checked_cases(cases: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(cases, list):
        raise ConfigError(
            f"{where}: expected a list of cases like {{'input': {{...}}, 'output': …}}"
        )
    for index, case in enumerate(cases):
        if not isinstance(case, dict) or not isinstance(case.get("input"), dict):
            raise ConfigError(f"{where}[{index}].input: expected the API's arguments as an object")
    return cases


def _write_cases(path: Path, cases: list[dict[str, Any]]) -> None:
    if path.suffix in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(cases, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def _label(index: int, case: Mapping[str, Any]) -> str:
    return f"case {index} ({case['name']})" if case.get("name") else f"case {index}"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 300 else text[:299] + "…"


def expect_answers(
    handle: DeploymentHandle,
    api: str,
    cases: str | Path | Sequence[Mapping[str, Any]],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    update: bool | None = None,
) -> None:
    """Call ``api`` with each case's ``input`` and check the answer equals its ``output``
    (numbers within ``tolerance``, relative or absolute).

    ``cases`` is a JSON/YAML file or a list. With ``update`` (default: pytest's
    ``--bentoship-update-golden`` or ``$BENTOSHIP_UPDATE_GOLDEN``) the file's outputs are
    rewritten with the answers instead. A mismatch raises :class:`AssertionError` naming each
    case, with the service's last log lines.
    """
    if isinstance(cases, str | Path):
        path: Path | None = Path(cases)
        loaded = read_cases(Path(cases))
    else:
        path, loaded = None, _checked_cases(list(cases), "cases")
    answers = [handle.call(api, case["input"]) for case in loaded]
    if update if update is not None else _updating():
        if path is None:
            raise ConfigError("updating golden answers needs a file: pass its path as cases")
        _write_cases(path, [{**case, "output": a} for case, a in zip(loaded, answers, strict=True)])
        return
    wrong = [
        f"{_label(i, case)}: expected {_shown(case.get('output'))}, got {_shown(answer)}"
        for i, (case, answer) in enumerate(zip(loaded, answers, strict=True))
        if "output" not in case or not compare_answers(case["output"], answer, tolerance)
    ]
    if wrong:
        hint = " (pytest --bentoship-update-golden rewrites the file)" if path else ""
        raise AssertionError(
            f"{len(wrong)} of {len(loaded)} answers of {handle.name}/{api} differ{hint}:\n"
            + "\n".join(wrong)
            + handle.log_excerpt()
        )


@dataclass(frozen=True)
class LatencyReport:
    """Latencies of ``n`` calls to one API, in milliseconds."""

    deployment: str
    api: str
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def summary(self) -> str:
        return (
            f"{self.deployment}/{self.api}: p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"max {self.max_ms:.1f} ms over {self.n} calls"
        )


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated between the nearest ranks."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def expect_latency(
    handle: DeploymentHandle,
    api: str,
    payload: Mapping[str, Any],
    *,
    p99_ms: float,
    n: int = 100,
    warmup: int = 3,
) -> LatencyReport:
    """Call ``api`` ``n`` times (after ``warmup`` calls) and check the p99 latency is at most
    ``p99_ms``; return the figures (pytest's summary lists them too)."""
    if n < 1 or warmup < 0 or not p99_ms > 0:
        raise ConfigError("expect_latency needs n >= 1, warmup >= 0 and p99_ms > 0")
    for _ in range(warmup):
        handle.call(api, payload)
    took = []
    for _ in range(n):
        started = time.perf_counter()
        handle.call(api, payload)
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    report = LatencyReport(
        handle.name, api, n, _quantile(took, 0.5), _quantile(took, 0.99), took[-1]
    )
    measured.append(report)
    if report.p99_ms > p99_ms:
        raise AssertionError(
            f"p99 latency above {p99_ms:g} ms: {report.summary()}{handle.log_excerpt()}"
        )
    return report
