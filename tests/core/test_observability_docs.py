"""docs/observability.md and its artefacts, checked against the code: the Prometheus metrics and
their labels (the doc's table and the Grafana dashboard), the scrape config, the metrics route's
answer, the log files and the Fluent Bit config that tails them, and the event kinds.

Unit tests: no process. The exposition is collected from a real controller over a SQLite store
in tmp_path; the log files are written by the real observability hub into a data dir in
tmp_path.
"""

from __future__ import annotations

import asyncio
import fnmatch
import glob
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bentoship.server.api.logs import LogSearchParams
from bentoship.server.api.observability import PROMETHEUS_PATH, MetricsParams
from bentoship.server.app import build_app
from bentoship.server.auth import TOKEN_FILE, load_or_create_token
from bentoship.server.observe.analytics import open_analytics
from bentoship.server.observe.exposition import RevisionCollector
from bentoship.server.observe.hub import Observability
from bentoship.server.observe.logs import LogStore, iso_time
from bentoship.server.observe.sampler import Sampler
from bentoship.server.observe.series import COUNTERS, GAUGES, SERIES, Sample, SeriesStore
from bentoship.server.registry.service import Registry
from bentoship.server.rollout.controller import Controller
from bentoship.server.rollout.events import EventKind
from bentoship.server.rollout.phases import RevisionPhase
from bentoship.server.rollout.runner import stdout_path
from bentoship.server.settings import ServerSettings
from bentoship.server.store import Revision, Store

from .records import deployment_record

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC = DOCS / "observability.md"
DASHBOARD = DOCS / "grafana" / "bentoship-dashboard.json"
FLUENT_BIT = DOCS / "fluent-bit" / "bentoship.conf"
DATA_DIR_VARIABLE = "${BENTOSHIP_HOME}"
DATASOURCE = "${DS_PROMETHEUS}"
REVISION_UID = "0123456789abcdef0123456789abcdef"

PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "inf", "nan"}
)


# the documents


def section(title: str) -> str:
    """The doc's section under the heading ``title``, up to the next heading of its level or
    above."""
    text = DOC.read_text()
    found = re.search(rf"^(#+) {re.escape(title)}\n", text, flags=re.MULTILINE)
    assert found is not None, f"no section {title!r} in {DOC.name}"
    level = len(found.group(1))
    rest = text[found.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def backticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def table_rows(text: str) -> list[list[str]]:
    """The rows of the Markdown tables in ``text`` (header and rule rows left out)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|(?:-+\|)+", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [row for row in rows if row[0].startswith("`")]


def fluent_bit_sections(path: Path) -> list[tuple[str, dict[str, str]]]:
    """A classic-mode Fluent Bit file as ``(SECTION, {key (lower case): value})``."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            sections.append((header.group(1).upper(), {}))
            continue
        key, _, value = line.partition(" ")
        assert sections and value.strip(), f"{path.name}: {raw!r} is not `Key value` in a section"
        sections[-1][1][key.lower()] = value.strip()
    return sections


def only(sections: list[tuple[str, dict[str, str]]], kind: str, /, **match: str) -> dict[str, str]:
    """The one section ``[kind]`` whose keys have the values ``match`` gives."""
    found = [
        keys
        for title, keys in sections
        if title == kind and all(keys.get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, f"expected one [{kind}] with {match}, found {len(found)}"
    return found[0]


def configuration_text(path: Path) -> str:
    """The file without its comment lines, as the doc shows it."""
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return "\n".join(lines).strip() + "\n"


# real objects


def make_settings(data_dir: Path) -> ServerSettings:
    return ServerSettings(data_dir=data_dir, token="t" * 32)


def make_store(settings: ServerSettings) -> Store:
    """A state store with deployment ``web`` and its serving revision ``r1``."""
    store = Store(settings.db_path)
    store.insert_deployment(deployment_record("web", target=REVISION_UID, serving=REVISION_UID))
    store.insert_revision(
        Revision(
            uid=REVISION_UID,
            deployment="web",
            seq=1,
            bento="iris:v1",
            config={},
            created_at="2026-01-01T00:00:00Z",
            phase=RevisionPhase.SERVING,
        )
    )
    return store


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    samples: frozenset[str]
    labels: frozenset[str]

    @property
    def queried_as(self) -> str:
        """The name a query uses: a counter's ``_total`` sample, else the family's name."""
        return f"{self.name}_total" if self.type == "counter" else self.name


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Family]:
    """Every metric family the exposition yields when each series it can have has a value: a
    revision with a request (and one in flight) and every gauge the sampler stores read."""
    tmp_path = tmp_path_factory.mktemp("exposition")
    settings = make_settings(tmp_path / "plane")
    store = make_store(settings)
    controller = Controller(settings, store)
    controller.traffic.started(REVISION_UID)
    controller.traffic.record(REVISION_UID, 200, 0.012)
    controller.traffic.started(REVISION_UID)
    database = open_analytics(tmp_path / "observe.duckdb")
    sampler = Sampler(controller, SeriesStore(database.cursor()))
    sampler.latest = {REVISION_UID: dict.fromkeys(GAUGES, 1.0)}
    try:
        families = list(RevisionCollector(controller, sampler).collect())
    finally:
        sampler.gpu.close()
        database.close()
        store.close()
    exported = {
        f.name: Family(
            f.name,
            f.type,
            frozenset(s.name for s in f.samples),
            frozenset(label for s in f.samples for label in s.labels),
        )
        for f in families
    }
    assert all(family.samples for family in exported.values())
    return exported


def by_sample(exposition: dict[str, Family]) -> dict[str, Family]:
    return {sample: f for f in exposition.values() for sample in f.samples}


# the Prometheus metrics, in the doc


def test_the_metrics_table_is_what_the_exposition_exports(
    exposition: dict[str, Family],
) -> None:
    rows = [row for row in table_rows(section("Prometheus")) if row[0].startswith("`bentoship_")]
    documented = {backticked(row[0])[0]: (row[1], frozenset(backticked(row[2]))) for row in rows}
    assert len(documented) == len(rows), "a metric is in the table twice"
    exported = {f.queried_as: (f.type, f.labels) for f in exposition.values()}
    assert documented == exported


def test_the_scrape_config_reaches_the_metrics_page(tmp_path: Path) -> None:
    text = section("Prometheus")
    (block,) = [b for b in code_blocks(text, "yaml") if "scrape_configs" in b]
    (job,) = yaml.safe_load(block)["scrape_configs"]
    assert job["metrics_path"] == PROMETHEUS_PATH
    assert job["authorization"]["type"] == "Bearer"
    credentials = Path(job["authorization"]["credentials_file"])
    assert credentials.name == TOKEN_FILE
    (target,) = job["static_configs"][0]["targets"]
    assert f"--port {target.rsplit(':', 1)[1]}" in text

    data_dir = tmp_path / "plane"
    data_dir.mkdir()
    token = load_or_create_token(data_dir)
    # Prometheus reads credentials_file at each scrape and trims the whitespace around it.
    sent = (data_dir / credentials.name).read_text().strip()
    settings = ServerSettings(data_dir=data_dir, token=token)
    store = make_store(settings)
    controller = Controller(settings, store)
    controller.traffic.record(REVISION_UID, 200, 0.01)
    observed = Observability.open(settings, controller)
    app = build_app(settings, Registry(settings, store), controller, observed)

    async def scrape() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://plane") as client:
            bearer = {"Authorization": f"{job['authorization']['type']} {sent}"}
            answered = await client.get(job["metrics_path"], headers=bearer)
            return answered, await client.get(job["metrics_path"])

    try:
        answered, refused = asyncio.run(scrape())
    finally:
        observed.logs.close()
        observed.sampler.gpu.close()
        observed.database.close()
        store.close()
    assert answered.status_code == 200, answered.text
    assert 'bentoship_requests_total{deployment="web",revision="r1",status_class="2xx"} 1.0' in (
        answered.text
    )
    assert refused.status_code == 401


# the Grafana dashboard


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def targets() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            yield panel, target


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for found in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\()?", text):
        if found.group(2) is None and found.group(1).lower() not in PROMQL_WORDS:
            names.add(found.group(1))
    return names


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """``(metric, {label names})`` of every selector with braces."""
    return [
        (metric, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", matchers)))
        for metric, matchers in re.findall(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", expr)
    ]


def grouping(expr: str) -> set[str]:
    """The labels of every ``by (...)``, ``without (...)``, ``on (...)`` and ``ignoring (...)``."""
    found = re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr)
    return {label.strip() for labels in found for label in labels.split(",") if label.strip()}


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["id"] is None and board["uid"] and board["title"]
    (source,) = board["__inputs"]
    assert source["name"] == DATASOURCE[2:-1]
    assert (source["type"], source["pluginId"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel, target in targets():
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE}, panel["title"]
        assert target["datasource"] == panel["datasource"]
        assert target["expr"].strip() and target["refId"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
    (variable,) = board["templating"]["list"]
    assert variable["name"] == "deployment" and variable["type"] == "query"
    assert variable["datasource"] == {"type": "prometheus", "uid": DATASOURCE}
    query = "label_values(bentoship_requests_total, deployment)"
    assert variable["definition"] == variable["query"]["query"] == query


def test_every_dashboard_query_uses_exported_metrics_and_labels(
    exposition: dict[str, Family],
) -> None:
    samples = by_sample(exposition)
    labels = {label for family in exposition.values() for label in family.labels}
    for panel, target in targets():
        expr, where = target["expr"], f"panel {panel['title']!r}: {target['expr']}"
        assert metric_names(expr), where
        assert metric_names(expr) <= set(samples), where
        for metric, matched in selectors(expr):
            assert metric in samples, where
            assert matched <= samples[metric].labels, where
        assert grouping(expr) <= labels, where
        assert set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", ""))) <= labels
        if panel["type"] == "timeseries":
            assert "revision" in grouping(expr), f"{where}: not per revision"
            assert 'deployment="$deployment"' in expr, where
    (variable,) = dashboard()["templating"]["list"]
    values = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
    assert values is not None
    metric, label = values.groups()
    assert label in samples[metric].labels


def test_the_dashboard_charts_every_exported_metric(exposition: dict[str, Family]) -> None:
    samples = by_sample(exposition)
    charted = {
        samples[name].name for _, target in targets() for name in metric_names(target["expr"])
    }
    assert charted == set(exposition)


# the metrics route


def test_the_metrics_route_example_has_the_answers_shape(tmp_path: Path) -> None:
    text = section("The metrics route")
    (block,) = code_blocks(text, "json")
    example = json.loads(block)
    (name,) = example["revisions"]
    shown = example["revisions"][name]
    assert set(SERIES) <= set(shown) <= set(SERIES) | set(GAUGES)
    assert all(len(values) == len(example["t"]) for values in shown.values())

    series = SeriesStore(open_analytics(tmp_path / "observe.duckdb").cursor())
    at = float(example["t"][0])
    read = dict.fromkeys([g for g in GAUGES if g in shown], 1.0)
    series.write([Sample("web", name, dict.fromkeys(COUNTERS, 1.0), read, {3: 1})], at=at)
    answer = {"deployment": "web", **series.query("web", since=at, until=at + 15)}
    assert set(answer) == set(example)
    assert set(answer["revisions"][name]) == set(shown)
    assert set(answer["totals"][name]) == set(example["totals"][name])

    parameters = {backticked(row[0])[0] for row in table_rows(text)}
    assert parameters == set(MetricsParams.model_fields)
    for gauge in GAUGES:
        assert f"`{gauge}`" in text, gauge


def test_the_log_search_parameters_are_the_routes() -> None:
    rows = table_rows(section("Search"))
    documented = [name for row in rows for name in backticked(row[0])]
    assert sorted(documented) == sorted(LogSearchParams.model_fields)


# the log files and Fluent Bit


def test_the_fluent_bit_config_in_the_doc_is_the_file() -> None:
    blocks = code_blocks(section("The JSON-lines files, and Fluent Bit"), "ini")
    parsers = FLUENT_BIT.parent / only(fluent_bit_sections(FLUENT_BIT), "SERVICE")["parsers_file"]
    assert configuration_text(FLUENT_BIT) in blocks
    assert configuration_text(parsers) in blocks


def test_fluent_bit_tails_the_files_the_log_store_writes(tmp_path: Path) -> None:
    config = fluent_bit_sections(FLUENT_BIT)
    tail = only(config, "INPUT", name="tail")
    assert {"path", "parser", "db", "refresh_interval"} <= set(tail)
    parsers = FLUENT_BIT.parent / only(config, "SERVICE")["parsers_file"]
    parser = only(fluent_bit_sections(parsers), "PARSER", name=tail["parser"])
    assert parser["format"] == "json" and parser["time_key"] == "time"
    assert only(config, "OUTPUT")["name"] == "stdout"

    data_dir = tmp_path / "plane"
    settings = make_settings(data_dir)
    store = make_store(settings)
    controller = Controller(settings, store)
    observed = Observability.open(settings, controller)
    at = 1767225601.25
    try:
        observed.logs.append("web", "r1", "stderr", ['ERROR "quoted" \u00e9 \\ done'], t=at)
        observed.logs.append("web", "r1", "stdout", ["served 200"], t=at + 1)
    finally:
        observed.logs.close()
        observed.sampler.gpu.close()
        observed.database.close()
    revision = store.get_revision(REVISION_UID)
    store.close()
    assert revision is not None
    raw = controller.views.log_path(revision)
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.touch()
    stdout_path(raw).touch()

    pattern = tail["path"].replace(DATA_DIR_VARIABLE, str(data_dir))
    written = data_dir / "logs" / "web" / "web.jsonl"
    assert glob.glob(pattern) == [str(written)]
    assert (data_dir / "observe.duckdb").exists()
    assert not fnmatch.fnmatch(tail["db"].replace(DATA_DIR_VARIABLE, str(data_dir)), pattern)

    records = [json.loads(line) for line in written.read_text().splitlines()]
    assert [r["line"] for r in records] == ['ERROR "quoted" \u00e9 \\ done', "served 200"]
    (example,) = code_blocks(section("The JSON-lines files, and Fluent Bit"), "json")
    assert all(list(r) == list(json.loads(example)) for r in records)
    time_format = parser["time_format"].replace("%L", "%f")
    parsed = datetime.strptime(records[0][parser["time_key"]], time_format)
    assert parsed.timestamp() == at
    assert records[0]["time"] == iso_time(at)


def test_the_glob_leaves_out_rotated_files(tmp_path: Path) -> None:
    tail = only(fluent_bit_sections(FLUENT_BIT), "INPUT", name="tail")
    data_dir = tmp_path / "plane"
    settings = make_settings(data_dir)
    database = open_analytics(tmp_path / "observe.duckdb")
    logs = LogStore(database.cursor(), files_dir=settings.logs_dir, file_max_bytes=300)
    try:
        for i in range(5):
            logs.append("web", "r1", "stdout", [f"line {i} " + "x" * 200], t=float(i))
    finally:
        logs.close()
        database.close()
    folder = settings.logs_dir / "web"
    assert (folder / "web.jsonl.1").exists()
    pattern = tail["path"].replace(DATA_DIR_VARIABLE, str(data_dir))
    assert glob.glob(pattern) == [str(folder / "web.jsonl")]


# events


def test_the_event_kinds_table_lists_every_kind() -> None:
    kinds = [backticked(row[0])[0] for row in table_rows(section("Events"))]
    assert sorted(kinds) == sorted(kind.value for kind in EventKind)
