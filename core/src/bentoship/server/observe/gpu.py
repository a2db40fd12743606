"""GPU utilisation and memory of a revision, through NVML (``nvidia-ml-py``).

A revision given GPUs by the allocator is read by those devices (its GPUs are its own); any
other by the processes of its tree that NVML sees on a device.

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

    def read(self, pids: set[int], devices: tuple[int, ...] = ()) -> dict[str, float]:
        """Utilisation (percent, the busiest device) and GPU memory of the revision's
        ``devices`` when it holds some, else of the devices its processes ``pids`` use."""
        if self._nvml is None:
            return {}
        if devices:
            return self._read_devices(devices)
        if not pids:
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

    def _read_devices(self, devices: tuple[int, ...]) -> dict[str, float]:
        nvml = self._nvml
        try:
            handles = [nvml.nvmlDeviceGetHandleByIndex(index) for index in devices]
            utilisation = [float(nvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in handles]
            used = sum(float(nvml.nvmlDeviceGetMemoryInfo(h).used) for h in handles)
        except Exception as exc:  # a simulated or vanished device: no reading
            log.debug("GPU reading of devices %s failed: %s", devices, exc)
            return {}
        return {"gpu_utilization_percent": max(utilisation), "gpu_memory_bytes": used}

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            finally:
                self._nvml = None
