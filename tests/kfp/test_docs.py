"""docs/kfp.md lists every parameter of every component the package exports, as declared."""

import inspect
import json
import re
import typing
from pathlib import Path

from kfp.dsl.base_component import BaseComponent
from kfp.dsl.types.type_annotations import InputAnnotation

import bentoship_kfp
import bentoship_kfp.components

DOC = Path(__file__).resolve().parents[2] / "docs" / "kfp.md"

ROW = re.compile(
    r"^\| `(?P<name>\w+)` \| `(?P<type>[^`]+)` \| (?P<default>[^|]+?) \| (?P<meaning>.*) \|$"
)


def exported_components() -> dict[str, BaseComponent]:
    """Every component the package exports: the public components of ``components``, and the
    names of the shipped YAML (so that a component added to either needs docs)."""
    module = bentoship_kfp.components
    found = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, BaseComponent) and not name.startswith("_")
    }
    exported = set(module.__all__) & set(found)
    assert exported == set(found), f"components not in __all__: {set(found) - exported}"
    assert set(found) == set(module.COMPONENTS) == set(bentoship_kfp.COMPONENT_NAMES)
    return found


def type_name(annotation: typing.Any) -> str:
    """The annotation as the docs write it: ``Optional[dict]``, ``Input[Artifact]``, ``str``."""
    if typing.get_origin(annotation) is typing.Union:
        (inner,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return f"Optional[{type_name(inner)}]"
    if typing.get_origin(annotation) is typing.Annotated:
        base, *marks = typing.get_args(annotation)
        return f"{'Input' if InputAnnotation in marks else 'Output'}[{base.__name__}]"
    return str(annotation.__name__)


def default_text(parameter: inspect.Parameter) -> str:
    if parameter.default is inspect.Parameter.empty:
        kind = type_name(parameter.annotation)
        if kind.startswith("Output["):
            return "(output)"
        if kind == "PipelineTaskFinalStatus":
            return "(set by KFP)"
        return "required"
    value = parameter.default
    return f"`{json.dumps(value) if isinstance(value, str) else repr(value)}`"


def documented_parameters() -> dict[str, list[tuple[str, str, str]]]:
    """The parameter tables under ``## Parameters``, by component: (name, type, default)."""
    text = DOC.read_text()
    section = text.split("\n## Parameters\n", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[tuple[str, str, str]]] = {}
    current = None
    for line in section.splitlines():
        heading = re.match(r"^### `(\w+)`$", line)
        if heading:
            current = heading[1]
            tables[current] = []
            continue
        row = ROW.match(line)
        if row and current is not None:
            assert row["meaning"].strip(), f"{current}.{row['name']} has no meaning in the docs"
            tables[current].append((row["name"], row["type"], row["default"].strip()))
    return tables


def test_docs_list_every_parameter_of_every_exported_component() -> None:
    documented = documented_parameters()
    components = exported_components()
    assert sorted(documented) == sorted(components), "docs/kfp.md ## Parameters is out of date"
    for name, component in components.items():
        declared = [
            (p.name, type_name(p.annotation), default_text(p))
            for p in inspect.signature(component.python_func).parameters.values()
        ]
        assert documented[name] == declared, f"docs/kfp.md: the table of {name} is out of date"
