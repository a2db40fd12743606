"""Compile every component to the YAML shipped in ``bentoship_kfp/component_yaml``.

python -m bentoship_kfp.compile            # rewrite the shipped files
python -m bentoship_kfp.compile --check    # exit 1 when a shipped file is stale
"""

import argparse
import sys
import tempfile
from pathlib import Path

from kfp import compiler

from .components import COMPONENTS

SHIPPED_DIR = Path(__file__).resolve().parent / "component_yaml"


def compile_all(directory: Path) -> dict[str, Path]:
    """Compile each component to ``<directory>/<name>.yaml``; return the paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, component in COMPONENTS.items():
        path = directory / f"{name}.yaml"
        compiler.Compiler().compile(component, str(path))
        written[name] = path
    return written


def stale(directory: Path = SHIPPED_DIR) -> list[str]:
    """The names whose file in ``directory`` differs from a fresh compile (or is missing)."""
    with tempfile.TemporaryDirectory() as fresh:
        compiled = compile_all(Path(fresh))
        return [
            name
            for name, path in compiled.items()
            if not (directory / path.name).is_file()
            or (directory / path.name).read_text() != path.read_text()
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the shipped files")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"{SHIPPED_DIR / name}.yaml is stale; run python -m bentoship_kfp.compile")
        return 1 if names else 0
    for path in compile_all(SHIPPED_DIR).values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
