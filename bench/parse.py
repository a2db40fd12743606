"""DAG parse cost: the provider's share of a DAG file's imports, inside one process.

Each fresh process imports ``airflow.sdk`` (the baseline), then the provider's operator, sensor
and hook modules (the figure), each timed on its own: two separate processes' ``airflow.sdk``
imports differ by more than the provider costs, so their difference would be noise. Triggers
are left out: the triggerer imports them, a DAG file does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bentoship_airflow.get_provider_info import get_provider_info

from .common import RUNS, Row, Sample

# The provider must not load these at parse time (a DAG file builds operators, not clients).
HEAVY = ("bentoml", "httpx")
MARK = "bench-parse: "

# argv: the provider's modules, HEAVY, "audit" or "time". An audit process (not timed) also
# records every import of a HEAVY module that the provider's own modules ask for, even one that
# ``airflow.sdk`` has loaded already (it loads httpx); the timed processes run unhooked.
CHILD = """
import builtins, importlib, json, sys, time

modules, heavy, audit = sys.argv[1].split(","), set(sys.argv[2].split(",")), sys.argv[3] == "audit"


def ours(name):
    return name.partition(".")[0] in ("bentoship", "bentoship_airflow")


def fail(message):
    sys.exit("bench/parse.py: " + message)


if any(ours(name) for name in sys.modules):
    fail("the provider is imported before airflow.sdk")
started = time.perf_counter()
import airflow.sdk
sdk = time.perf_counter() - started
# Airflow's providers manager reads every provider's metadata while it loads the configuration.
early = sorted(n for n in sys.modules if ours(n) and n not in (
    "bentoship_airflow", "bentoship_airflow.get_provider_info"))
if early:
    fail("provider modules imported before the timed import: " + ", ".join(early))
before = set(sys.modules)
asked = []
if audit:
    original = builtins.__import__

    def watch(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__") or ""
        if level == 0 and name.partition(".")[0] in heavy and ours(importer):
            asked.append(name + " (by " + importer + ")")
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = watch
started = time.perf_counter()
for module in modules:
    importlib.import_module(module)
provider = time.perf_counter() - started
if audit:
    builtins.__import__ = original
loaded = sorted({n.partition(".")[0] for n in set(sys.modules) - before} & heavy)
if loaded:
    fail("the provider's import loads " + ", ".join(loaded))
if asked:
    fail("the provider's modules import " + ", ".join(asked))
print(MARK + json.dumps({"sdk": sdk, "provider": provider}))
"""


def parse_time_modules() -> list[str]:
    """Every hook, operator and sensor module the provider declares (not its triggers)."""
    info = get_provider_info()
    return [
        module
        for kind in ("hooks", "operators", "sensors")
        for entry in info[kind]
        for module in entry["python-modules"]
    ]


def child(modules: list[str], audit: bool) -> dict[str, float]:
    code = f"MARK = {MARK!r}\n{CHILD}"
    mode = "audit" if audit else "time"
    args = [sys.executable, "-c", code, ",".join(modules), ",".join(HEAVY), mode]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    marked = [line for line in result.stdout.splitlines() if line.startswith(MARK)]
    if result.returncode != 0 or not marked:
        raise RuntimeError(
            f"DAG parse benchmark failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    figures: dict[str, float] = json.loads(marked[-1][len(MARK) :])
    return figures


def run(workdir: Path) -> list[Row]:
    modules = parse_time_modules()
    child(modules, audit=True)  # also warms the bytecode and file caches
    sdk, provider = [], []
    for _ in range(RUNS):
        figures = child(modules, audit=False)
        sdk.append(figures["sdk"])
        provider.append(figures["provider"])
    figure = Sample.of(provider)
    return [
        Row(
            "DAG parse: provider after airflow.sdk",
            "ms",
            figure,
            Sample.of(sdk),
            "import airflow.sdk, same processes",
            "<= 50 ms",
            figure.median <= 0.05,
        ),
    ]
