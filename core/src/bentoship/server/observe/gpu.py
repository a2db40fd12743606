"""GPU utilisation and memory of a process tree, through NVML (``nvidia-ml-py``).

Without the library, a driver or a GPU, ``GpuReader.available`` is False and every reading is
empty: the series are absent, not zero.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["GpuReader"]

log = logging.getLogger(__name__)


class GpuReader:
    def __init__(self) -> None:
        self._nvml: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception as exc:  # no library, no driver, no device: no GPU series
            log.debug("no GPU metrics: %s", exc)

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def read(self, pids: set[int]) -> dict[str, float]:
        """Utilisation (percent, the busiest device the processes use) and their GPU memory."""
        if self._nvml is None or not pids:
            return {}
        nvml = self._nvml
        used_memory = 0.0
        utilisation: list[float] = []
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                device = nvml.nvmlDeviceGetHandleByIndex(index)
                running = nvml.nvmlDeviceGetComputeRunningProcesses(device)
                ours = [p for p in running if p.pid in pids]
                if ours:
                    used_memory += sum(p.usedGpuMemory or 0 for p in ours)
                    utilisation.append(float(nvml.nvmlDeviceGetUtilizationRates(device).gpu))
        except Exception as exc:  # a device that went away: skip this reading
            log.debug("GPU reading failed: %s", exc)
            return {}
        if not utilisation:
            return {}
        return {"gpu_utilization_percent": max(utilisation), "gpu_memory_bytes": used_memory}

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            finally:
                self._nvml = None
