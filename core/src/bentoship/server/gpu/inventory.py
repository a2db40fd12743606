"""The GPUs this machine offers to deployments: found through NVML, or read from a JSON file.

A JSON inventory (``--gpu-inventory``) describes GPUs that are not there, for tests and demos:
``[{"index": 0, "name": "NVIDIA A100-SXM4-40GB", "memory_bytes": 42949672960}, ...]``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Gpu",
    "Inventory",
    "InventoryError",
    "detect",
    "find_inventory",
    "load_inventory",
    "model_slug",
]

log = logging.getLogger(__name__)

VENDOR_WORDS = frozenset({"nvidia", "tesla", "geforce", "quadro"})


class InventoryError(ValueError):
    """A GPU inventory file, or a ``--gpus`` list, that does not fit the machine."""


def model_slug(name: str) -> str:
    """The short model name of an NVML name or a BentoCloud ``gpu_type``.

    ``NVIDIA A100-SXM4-40GB`` and ``nvidia-tesla-a100`` give ``a100``; ``NVIDIA GeForce RTX
    4090`` gives ``rtx4090``: the words up to the first with a digit, vendor words left out.
    """
    words = [w for w in re.split(r"[\s_-]+", name.lower()) if w and w not in VENDOR_WORDS]
    picked: list[str] = []
    for word in words:
        picked.append(word)
        if any(c.isdigit() for c in word):
            break
    return re.sub(r"[^a-z0-9]", "", "".join(picked)) or "gpu"


@dataclass(frozen=True)
class Gpu:
    index: int
    """NVML's index (PCI bus order), which ``CUDA_VISIBLE_DEVICES`` names."""
    name: str
    memory_bytes: int

    @property
    def model(self) -> str:
        return model_slug(self.name)

    @property
    def memory(self) -> str:
        """The memory as Kubernetes writes it (``40Gi``)."""
        return f"{round(self.memory_bytes / 1024**3)}Gi"


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[Gpu, ...] = ()
    source: str = "NVML"

    def __bool__(self) -> bool:
        return bool(self.gpus)

    def of_model(self, model: str | None) -> tuple[Gpu, ...]:
        return tuple(g for g in self.gpus if model is None or g.model == model)

    def models(self) -> dict[str, tuple[Gpu, ...]]:
        found: dict[str, list[Gpu]] = {}
        for gpu in self.gpus:
            found.setdefault(gpu.model, []).append(gpu)
        return {model: tuple(gpus) for model, gpus in found.items()}

    def restrict(self, indices: Iterable[int]) -> Inventory:
        """Only the GPUs ``indices`` (``--gpus 0,1``); an index not present is an error."""
        wanted = sorted(set(indices))
        present = {g.index: g for g in self.gpus}
        missing = [i for i in wanted if i not in present]
        if missing:
            raise InventoryError(
                f"--gpus names GPU {', '.join(map(str, missing))}, which {self.source} does not "
                f"find; this machine has {self.describe()}"
            )
        return Inventory(tuple(present[i] for i in wanted), self.source)

    def describe(self) -> str:
        """One line: ``4 GPUs: 4 x NVIDIA A100-SXM4-40GB (40Gi; GPU 0,1,2,3)``, or none."""
        if not self.gpus:
            return f"no GPU ({self.source} finds none)"
        groups = []
        for gpus in self.models().values():
            indices = ",".join(str(g.index) for g in gpus)
            groups.append(f"{len(gpus)} x {gpus[0].name} ({gpus[0].memory}; GPU {indices})")
        count = len(self.gpus)
        return f"{count} GPU{'s' if count > 1 else ''}: {', '.join(groups)}"

    def instance_types(self) -> dict[str, tuple[Gpu, int]]:
        """``gpu.<model>.<n>`` for 1, 2, 4, ... and all of each model: (a GPU of it, n)."""
        types: dict[str, tuple[Gpu, int]] = {}
        for model, gpus in self.models().items():
            counts = sorted({*(n for n in (1, 2, 4, 8, 16, 32) if n <= len(gpus)), len(gpus)})
            for n in counts:
                types[f"gpu.{model}.{n}"] = (gpus[0], n)
        return types


def detect() -> Inventory:
    """The GPUs NVML finds (none without ``nvidia-ml-py``, a driver or a device)."""
    try:
        import pynvml
    except ImportError:
        return Inventory(source="NVML (nvidia-ml-py is not installed)")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # no driver, no device
        log.info("no GPU: NVML did not start (%s)", exc)
        return Inventory()
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            text = name.decode() if isinstance(name, bytes) else str(name)
            gpus.append(Gpu(index, text, int(memory.total)))
        return Inventory(tuple(gpus))
    finally:
        pynvml.nvmlShutdown()


def _gpu(item: Any, position: int) -> Gpu:
    if not isinstance(item, dict):
        raise InventoryError(f"GPU inventory item {position}: expected an object")
    index, name, memory = item.get("index", position), item.get("name"), item.get("memory_bytes")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InventoryError(f"GPU inventory item {position}: index must be an integer >= 0")
    if not isinstance(name, str) or not name.strip():
        raise InventoryError(f"GPU inventory item {position}: name must be a GPU's name")
    if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
        raise InventoryError(f"GPU inventory item {position}: memory_bytes must be > 0")
    return Gpu(index, name.strip(), memory)


def load_inventory(path: Path) -> Inventory:
    """A simulated inventory from a JSON list of ``{index, name, memory_bytes}``."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InventoryError(f"cannot read the GPU inventory {path}: {exc}") from None
    if not isinstance(raw, list):
        raise InventoryError(f"GPU inventory {path}: expected a JSON list of GPUs")
    gpus = tuple(_gpu(item, position) for position, item in enumerate(raw))
    if len({g.index for g in gpus}) != len(gpus):
        raise InventoryError(f"GPU inventory {path}: two GPUs have the same index")
    return Inventory(tuple(sorted(gpus, key=lambda g: g.index)), f"the inventory file {path}")


def find_inventory(file: Path | None = None, only: Iterable[int] | None = None) -> Inventory:
    """The inventory of ``file`` when given, else NVML's; restricted to ``only`` when given."""
    inventory = load_inventory(file) if file is not None else detect()
    return inventory.restrict(only) if only is not None else inventory
