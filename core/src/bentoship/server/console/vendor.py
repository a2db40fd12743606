"""The console's vendored browser libraries, pinned by version and SHA-384.

They were taken from the npm registry (``npm pack htmx.org@2.0.11 uplot@1.6.32``, the files of
``dist/``) and are served as they are. Pages load them with Subresource Integrity, so a browser
refuses a changed file, and :func:`check_vendored` refuses to serve one.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STATIC_DIR", "VENDORED", "VendoredFile", "check_vendored"]

STATIC_DIR = Path(__file__).parent / "static"


@dataclass(frozen=True)
class VendoredFile:
    path: str
    package: str
    version: str
    integrity: str
    """Subresource Integrity of the file: ``sha384-`` and the base64 digest."""


VENDORED = {
    "htmx": VendoredFile(
        "vendor/htmx.min.js",
        "htmx.org",
        "2.0.11",
        "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg",
    ),
    "uplot": VendoredFile(
        "vendor/uPlot.iife.min.js",
        "uplot",
        "1.6.32",
        "sha384-Gx3t0zdBAuQOuvvmaLZj7HKEiSgWTAs+VdtNY7wt19QDPTDQjFIwAuXDj0zeN00c",
    ),
    "uplot_css": VendoredFile(
        "vendor/uPlot.min.css",
        "uplot",
        "1.6.32",
        "sha384-IfV0B7MIOYuO95kO9G5ySKPz/85zqFNOAs8iy4tkK5zd9izhJAB8b7lHrwYqqmYE",
    ),
}


def integrity_of(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def check_vendored(static_dir: Path = STATIC_DIR) -> None:
    """Raise RuntimeError naming the first vendored file that does not match its pin."""
    for item in VENDORED.values():
        found = integrity_of(static_dir / item.path)
        if found != item.integrity:
            raise RuntimeError(
                f"console: {item.path} ({item.package} {item.version}) does not match its pinned "
                f"hash; reinstall bentoship (found {found[:19]}…)"
            )
