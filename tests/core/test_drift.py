"""check_drift: known shifts are found, no shift is rarely flagged, edge cases have verdicts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from bentoship.drift import DriftReport, DriftThresholds, SqlQuery, Verdict
from bentoship.errors import ConfigError, DriftDetected, MissingExtraError
from bentoship.steps import check_drift

ROWS = 3000
CATEGORIES = [f"c{i}" for i in range(10)]


def synthetic(seed: int, *, shifted: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ten numeric columns and two categorical ones; when ``shifted``, ``x3``'s mean moves by
    0.5 sigma and category ``c0`` of ``colour`` goes from 10% to 40% of the rows."""
    rng = np.random.default_rng(seed)
    reference = {f"x{i}": rng.normal(i, 1 + i / 10, ROWS) for i in range(10)}
    current = {f"x{i}": rng.normal(i, 1 + i / 10, ROWS) for i in range(10)}
    if shifted:
        current["x3"] = current["x3"] + 0.5 * (1 + 3 / 10)
    even = [0.1] * 10
    moved = [0.4] + [0.6 / 9] * 9
    reference["colour"] = rng.choice(CATEGORIES, ROWS, p=even)
    current["colour"] = rng.choice(CATEGORIES, ROWS, p=moved if shifted else even)
    reference["size"] = rng.choice(["s", "m", "l"], ROWS, p=[0.3, 0.5, 0.2])
    current["size"] = rng.choice(["s", "m", "l"], ROWS, p=[0.3, 0.5, 0.2])
    return reference, current


def test_exactly_the_shifted_columns_are_flagged() -> None:
    reference, current = synthetic(7, shifted=True)
    report = check_drift(reference, current)
    assert sorted(report.drifted_columns) == ["colour", "x3"]
    kinds = {c.name: (c.kind, c.test) for c in report.columns}
    assert kinds["x3"] == ("numeric", "ks") and kinds["colour"] == ("categorical", "chi2")
    assert report.share_drifted == pytest.approx(2 / 12)
    assert report.drifted is False  # 2 of 12 is below the default share of 50%
    assert check_drift(reference, current, thresholds=DriftThresholds(share=0.1)).drifted


def test_without_a_shift_columns_are_rarely_flagged() -> None:
    """Over 100 seeds, each column's false-positive rate is at most the test's p-value."""
    flagged: dict[str, int] = {}
    for seed in range(100):
        reference, current = synthetic(1000 + seed, shifted=False)
        for column in check_drift(reference, current).columns:
            flagged[column.name] = flagged.get(column.name, 0) + column.drifted
    assert len(flagged) == 12
    assert max(flagged.values()) / 100 <= DriftThresholds().p_value, flagged


@pytest.mark.parametrize("rows", [ROWS, 40_000])
def test_ks_statistic_and_p_value_are_scipys(rows: int) -> None:
    """Small samples (scipy's exact p-value) and large ones (merged here, asymptotic p-value),
    with ties (rounded values) and a shift too small to flag."""
    rng = np.random.default_rng(rows)
    reference = {"x": rng.normal(0, 1, rows).round(2), "y": rng.normal(0, 1, rows)}
    current = {"x": rng.normal(0.02, 1, rows + 7).round(2), "y": rng.normal(0.3, 1, rows - 5)}
    for column in check_drift(reference, current).columns:
        expected = stats.ks_2samp(reference[column.name], current[column.name])
        assert column.statistic == expected.statistic
        assert column.p_value == pytest.approx(expected.pvalue, rel=1e-12, abs=1e-300)


def test_edge_cases_have_verdicts_not_exceptions() -> None:
    reference = {
        "with_nulls": np.array([1.0, np.nan, 2.0, 3.0] * 250),
        "objects": np.array([1, None, 2, 3] * 250, dtype=object),
        "gone": np.arange(1000.0),
        "constant": np.full(1000, 5.0),
        "moved_constant": np.full(1000, 5.0),
        "no_values": np.full(1000, np.nan),
        "labels": np.array(["a", "b"] * 500),
    }
    current = {
        "with_nulls": np.array([3.0, 2.0, 1.0, np.nan, np.nan] * 200),
        "objects": np.array([1, 2, 3, None] * 250, dtype=object),
        "constant": np.full(1000, 5.0),
        "moved_constant": np.full(1000, 6.0),
        "no_values": np.full(1000, np.nan),
        "labels": np.array(["a", "b", "new", "new"] * 250),
        "added": np.arange(1000.0),
    }
    columns = {c.name: c for c in check_drift(reference, current).columns}
    assert columns["with_nulls"].reference_nulls == 250
    assert columns["with_nulls"].current_nulls == 400
    assert columns["with_nulls"].verdict == Verdict.NO_DRIFT
    assert columns["objects"].kind == "numeric" and columns["objects"].current_nulls == 250
    assert columns["gone"].verdict == columns["added"].verdict == Verdict.MISSING
    assert not columns["gone"].drifted and columns["gone"].only_in == "reference"
    assert columns["added"].only_in == "current" and columns["added"].current_count == 1000
    assert columns["constant"].verdict == Verdict.NO_DRIFT
    assert columns["moved_constant"].verdict == Verdict.DRIFT
    assert columns["no_values"].verdict == Verdict.EMPTY and not columns["no_values"].drifted
    new = columns["labels"]
    assert new.verdict == Verdict.DRIFT and new.psi is not None and np.isfinite(new.psi)
    assert new.histogram is not None and new.histogram.labels == ["a", "b", "new"]


FEATURES = ["f0", "f1", "f2", "f3"]


def features_and_traffic() -> tuple[dict[str, Any], dict[str, Any]]:
    """Training features, and traffic with the same features (no shift) and a ``prediction``
    column the training data has not."""
    rng = np.random.default_rng(3)
    reference = {name: rng.normal(0, 1, ROWS) for name in FEATURES}
    current = {name: rng.normal(0, 1, ROWS) for name in FEATURES}
    current["prediction"] = rng.choice(["setosa", "versicolor", "virginica"], ROWS)
    return reference, current


def test_a_column_on_one_side_only_is_missing_not_drifted(tmp_path: Path) -> None:
    reference, current = features_and_traffic()
    page = tmp_path / "drift.html"
    report = check_drift(
        reference, current, thresholds=DriftThresholds(share=0.1), report_path=page
    )
    prediction = report.column("prediction")
    assert prediction.verdict == Verdict.MISSING and prediction.only_in == "current"
    assert not prediction.drifted and prediction.current_count == ROWS
    assert report.drifted_columns == [] and report.share_drifted == 0.0
    assert report.drifted is False
    assert report.compared_columns == FEATURES and report.missing_columns == ["prediction"]
    assert report.summary() == (
        "no drift: 0 of 4 columns drifted (0%; threshold 10%): none; compared: f0, f1, f2, f3; "
        "missing (not counted as drifted): prediction (current only)"
    )
    found = report.to_dict()
    assert found["drifted"] is False and found["share_drifted"] == 0.0
    assert found["drifted_columns"] == [] and found["missing_columns"] == ["prediction"]
    assert found["compared_columns"] == FEATURES
    assert DriftReport.from_dict(json.loads(report.to_json())) == report
    html = page.read_text()
    assert "Compared (4): f0, f1, f2, f3." in html
    assert "(not counted as drifted)" in html and "prediction (current only)" in html


def test_missing_as_drift_counts_a_missing_column(tmp_path: Path) -> None:
    reference, current = features_and_traffic()
    limits = DriftThresholds(share=0.2)
    report = check_drift(reference, current, thresholds=limits, missing_as_drift=True)
    assert report.column("prediction").verdict == Verdict.MISSING
    assert report.column("prediction").drifted
    assert report.drifted_columns == ["prediction"] and report.share_drifted == pytest.approx(0.2)
    assert report.drifted is True
    assert report.missing_columns == ["prediction"] and report.compared_columns == FEATURES
    assert report.summary().endswith("missing (counted as drifted): prediction (current only)")
    assert DriftReport.from_dict(json.loads(report.to_json())) == report
    with pytest.raises(DriftDetected, match=r"^drift: 1 of 5 columns drifted .*: prediction;"):
        check_drift(
            reference,
            current,
            thresholds=limits,
            missing_as_drift=True,
            gate=True,
            report_path=tmp_path / "drift.html",
        )
    assert "(counted as drifted)" in (tmp_path / "drift.html").read_text()


def test_columns_restricts_the_comparison_and_the_report_names_them(tmp_path: Path) -> None:
    reference, current = features_and_traffic()
    page = tmp_path / "drift.html"
    report = check_drift(
        reference, current, columns=FEATURES[:3], missing_as_drift=True, report_path=page
    )
    assert [c.name for c in report.columns] == report.compared_columns == FEATURES[:3]
    assert report.missing_columns == [] and report.share_drifted == 0.0
    assert report.summary() == (
        "no drift: 0 of 3 columns drifted (0%; threshold 50%): none; compared: f0, f1, f2"
    )
    assert report.to_dict()["compared_columns"] == FEATURES[:3]
    html = page.read_text()
    assert "Compared (3): f0, f1, f2." in html
    assert "prediction" not in html and 'id="column-f3"' not in html


def test_the_report_is_json_and_a_self_contained_page(tmp_path: Path) -> None:
    reference, current = synthetic(11, shifted=True)
    reference["<b>odd</b>"] = reference.pop("size")
    current["<b>odd</b>"] = current.pop("size")
    page = tmp_path / "report" / "drift.html"
    report = check_drift(reference, current, report_path=page)
    again = DriftReport.from_dict(json.loads(report.to_json()))
    assert again == report
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "&lt;b&gt;odd&lt;/b&gt;" in html and "<b>odd</b>" not in html
    assert html.count("<svg") == 12 and 'id="column-x3"' in html


def test_a_gate_raises_with_the_summary(tmp_path: Path) -> None:
    reference, current = synthetic(5, shifted=True)
    limits = DriftThresholds(share=0.1)
    with pytest.raises(DriftDetected, match=r"drift: 2 of 12 columns drifted .*colour, x3|x3"):
        check_drift(reference, current, thresholds=limits, gate=True, report_path=tmp_path / "r")
    assert check_drift(reference, current, gate=True).drifted is False


@pytest.mark.slow
def test_verdicts_agree_with_evidentlys_default_preset(tmp_path: Path) -> None:
    """Evidently (the ``evidently`` extra, installed by the test environment) judges the same
    columns as we do, and its own page is written beside ours and linked from it."""
    reference, current = synthetic(7, shifted=True)
    page = tmp_path / "drift.html"
    report = check_drift(reference, current, report_path=page, evidently=True)
    assert report.evidently is not None and len(report.evidently) == 12
    theirs = {c.name: c.drifted for c in report.evidently}
    assert theirs == {c.name: c.drifted for c in report.columns}
    assert sorted(name for name, drifted in theirs.items() if drifted) == ["colour", "x3"]
    methods = {c.name: c.method for c in report.evidently}
    assert methods["x3"] == "Wasserstein distance (normed)"
    assert methods["colour"] == "Jensen-Shannon distance"
    assert DriftReport.from_dict(json.loads(report.to_json())) == report
    html = page.read_text()
    assert "agrees on 12 of 12 columns" in html
    assert 'href="drift.evidently.html"' in html and "<script" not in html
    theirs_page = (tmp_path / "drift.evidently.html").read_text()
    assert "Dataset Drift" in theirs_page and theirs_page.count("x3") > 10


def test_evidently_without_its_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference, current = synthetic(7, shifted=True)
    monkeypatch.setitem(sys.modules, "evidently", None)
    with pytest.raises(MissingExtraError, match=r"bentoship\[evidently\]"):
        check_drift(reference, current, evidently=True)


@pytest.mark.slow
def test_a_drift_check_never_imports_evidently() -> None:
    script = (
        "import sys\n"
        "from bentoship.steps import check_drift\n"
        "assert check_drift({'x': [1.0, 2.0, 3.0]}, {'x': [1.0, 2.0, 4.0]}).columns\n"
        "assert 'evidently' not in sys.modules and 'pandas' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_parquet_and_sql_sides_read_like_columns(tmp_path: Path) -> None:
    import duckdb

    reference, current = synthetic(13, shifted=True)
    numbers = {k: v for k, v in current.items() if k.startswith("x")}
    parquet = tmp_path / "current.parquet"
    with duckdb.connect() as db:
        db.register("frame", {k: v for k, v in numbers.items()})
        db.execute(f"COPY frame TO '{parquet}' (FORMAT parquet)")
    database = tmp_path / "warehouse.db"
    with sqlite3.connect(database) as db:
        db.execute(f"CREATE TABLE ref ({', '.join(numbers)})")
        rows = zip(*(reference[k].tolist() for k in numbers), strict=True)
        db.executemany(f"INSERT INTO ref VALUES ({', '.join('?' * len(numbers))})", rows)
    from_files = check_drift(SqlQuery(f"sqlite:///{database}", "SELECT * FROM ref"), parquet)
    in_memory = check_drift({k: reference[k] for k in numbers}, numbers)
    assert from_files.drifted_columns == in_memory.drifted_columns == ["x3"]
    assert [c.statistic for c in from_files.columns] == [c.statistic for c in in_memory.columns]


def test_unreadable_sides_say_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; give a Parquet"):
        check_drift(tmp_path / "missing.parquet", {"x": [1.0]})
    with pytest.raises(ConfigError, match=r"the query on sqlite:///.* failed \(no such table"):
        check_drift(SqlQuery(f"sqlite:///{tmp_path}/w.db", "SELECT * FROM nope"), {"x": [1]})
    secret = "postgresql://me:hunter2@127.0.0.1:1/db"
    with pytest.raises(ConfigError) as raised:
        check_drift(SqlQuery(secret, "SELECT 1"), {"x": [1]})
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ConfigError, match="cannot read a int"):
        check_drift(5, {"x": [1]})
    with pytest.raises(ConfigError, match="column 'y' is on neither side"):
        check_drift({"x": [1.0]}, {"x": [2.0]}, columns=["y"])
    with pytest.raises(ConfigError, match="p_value must be in"):
        DriftThresholds(p_value=2)
