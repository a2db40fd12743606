"""docs/airflow.md lists the parameters of every operator, sensor and trigger the provider
exports, as their signatures declare them, and shows a deployment of the four processes."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "airflow.md"

CONFIG_DEFAULTS = {"deferrable": ("operators", "default_deferrable")}
"""Parameters whose default is an Airflow setting, read when the module is imported."""


def exported_classes() -> dict[str, type]:
    """Every public operator, sensor and trigger class defined in the modules the provider info
    lists (what the providers manager exports), by name."""
    from airflow.sdk import BaseOperator
    from airflow.triggers.base import BaseTrigger

    from bentoship_airflow.get_provider_info import get_provider_info

    info = get_provider_info()
    found: dict[str, type] = {}
    for kind, base in (("operators", BaseOperator), ("sensors", BaseOperator)):
        found.update(_classes(info[kind], base))
    found.update(_classes(info["triggers"], BaseTrigger))
    return found


def _classes(entries: list[dict[str, Any]], base: type) -> dict[str, type]:
    classes = {}
    for entry in entries:
        for name in entry["python-modules"]:
            module = importlib.import_module(name)
            for attr, value in vars(module).items():
                if (
                    inspect.isclass(value)
                    and issubclass(value, base)
                    and value.__module__ == name
                    and not attr.startswith("_")
                ):
                    classes[attr] = value
    return classes


def own_parameters(cls: type) -> list[inspect.Parameter]:
    """The keyword parameters of the class and of its provider base classes (not Airflow's)."""
    parameters: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if not klass.__module__.startswith("bentoship_airflow") or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                parameters.setdefault(p.name, p)
    return list(parameters.values())


def default_text(parameter: inspect.Parameter) -> str:
    if parameter.default is inspect.Parameter.empty:
        return "required"
    if parameter.name in CONFIG_DEFAULTS:
        from airflow.sdk.configuration import conf

        section, key = CONFIG_DEFAULTS[parameter.name]
        assert parameter.default == conf.getboolean(section, key, fallback=False)
        return f"`[{section}] {key}`"
    value = parameter.default
    return f"`{json.dumps(value) if isinstance(value, str) else repr(value)}`"


def cells(line: str) -> list[str]:
    """The cells of a table row; ``\\|`` is a pipe inside a cell (GitHub's table syntax)."""
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [part.strip().replace("\\|", "|") for part in parts]


def documented() -> dict[str, list[tuple[str, str, str, bool]]]:
    """The tables under ``## Parameters``: (name, type, default, templated) by class."""
    section = DOC.read_text().split("\n## Parameters\n", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[tuple[str, str, str, bool]]] = {}
    current = None
    for line in section.splitlines():
        heading = re.match(r"^### `(\w+)`$", line)
        if heading:
            current = tables.setdefault(heading[1], [])
        elif line.startswith("| `") and current is not None:
            name, kind, default, templated, meaning = cells(line)
            assert meaning, f"{name} has no meaning in docs/airflow.md"
            assert templated in ("yes", ""), line
            current.append((name.strip("`"), kind.strip("`"), default, templated == "yes"))
    return tables


def test_docs_list_every_parameter_of_every_exported_class() -> None:
    classes = exported_classes()
    assert {"BentoDeployOperator", "BentoDeploymentSensor", "BentoDeploymentTrigger"} <= set(
        classes
    )
    tables = documented()
    assert sorted(tables) == sorted(classes), "docs/airflow.md ## Parameters is out of date"
    for name, cls in classes.items():
        templated = set(getattr(cls, "template_fields", ()))
        declared = [
            (p.name, str(p.annotation), default_text(p), p.name in templated)
            for p in own_parameters(cls)
        ]
        assert tables[name] == declared, f"docs/airflow.md: the table of {name} is out of date"


def test_docs_show_a_deployment_whose_triggerer_sees_the_connection() -> None:
    text = DOC.read_text()
    deployment = text.split("\n## Deploying Airflow with this provider\n", 1)[1]
    for command in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert re.search(rf"^airflow {command}\b", deployment, re.MULTILINE), command
    env_file = re.search(r"```shell\n(.*?)```", deployment, re.DOTALL)
    assert env_file is not None
    assert "loaded by the api-server, scheduler, dag-processor and triggerer" in env_file[1]
    (conn,) = re.findall(r"^AIRFLOW_CONN_BENTOCLOUD_DEFAULT='(.*)'$", env_file[1], re.MULTILINE)
    assert json.loads(conn)["conn_type"] == "bentocloud"
    assert "airflow connections add bentocloud_default --conn-type bentocloud" in deployment
