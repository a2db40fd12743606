"""Compile every component to the YAML shipped in ``bentoship_kfp/component_yaml``.

python -m bentoship_kfp.compile            # rewrite the shipped files
python -m bentoship_kfp.compile --check    # exit 1 when a shipped file is stale
python -m bentoship_kfp.compile --image registry.example.com/bentoship-kfp:TAG --output-dir DIR

The shipped files always hold the default image (``bentoship_kfp.DEFAULT_IMAGE``), whatever
``BENTOSHIP_KFP_IMAGE`` says; ``--image`` writes YAML for another image to another directory.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from kfp import compiler

from ._image import DEFAULT_IMAGE
from .components import with_image

SHIPPED_DIR = Path(__file__).resolve().parent / "component_yaml"


def compile_all(directory: Path, image: str = DEFAULT_IMAGE) -> dict[str, Path]:
    """Compile each component, running in ``image``, to ``<directory>/<name>.yaml``; return
    the paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, component in with_image(image).items():
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
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="the image every component runs in")
    parser.add_argument(
        "--output-dir", type=Path, default=SHIPPED_DIR, help="where to write the YAML files"
    )
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"{SHIPPED_DIR / name}.yaml is stale; run python -m bentoship_kfp.compile")
        return 1 if names else 0
    if args.image != DEFAULT_IMAGE and args.output_dir.resolve() == SHIPPED_DIR:
        parser.error(f"the shipped YAML holds the default image {DEFAULT_IMAGE}; give --output-dir")
    for path in compile_all(args.output_dir, args.image).values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
