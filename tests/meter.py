"""Run a command and say what it cost: wall time, CPU seconds of all its processes, and how many
``bentoml serve`` processes were started (``make test`` runs the suite through this).

    python -m tests.meter [--by-command] -- COMMAND [ARG ...]

The CPU figure is user + sys of every process the command started and waited for (the
control planes and the ``bentoml serve`` processes they started included). The count of
``bentoml serve`` starts is read from a ledger that every start appends a line to
(``BENTOSHIP_SERVE_LEDGER``, see ``bentoship.server.rollout.runner``): a fresh one, or the
file that variable already names, to keep (each line: pid, bento tag, the test that started it).

With ``--by-command`` (or ``BENTOSHIP_METER_BY_COMMAND=1`` in the environment), it also samples
every process under the command every 0.1 s and prints where the CPU went, by kind of process:
``bentoml serve``'s arbiters and workers, control planes, pytest, kfp.local tasks, the browser,
and so on. A process that lives less than a sample, or that leaves the tree (a daemon whose
parent exits), is missed, so the table's total is a little off the meter's.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

LEDGER_ENV = "BENTOSHIP_SERVE_LEDGER"
BY_COMMAND_ENV = "BENTOSHIP_METER_BY_COMMAND"
SAMPLE_SECONDS = 0.1
KINDS = (
    ("_bentoml_impl.worker", "bentoml serve: workers"),
    ("circusd", "bentoml serve: arbiters"),
    (" serve ", "bentoml serve: arbiters"),
    ("bentoship server", "control planes"),
    ("bentoship.server", "control planes"),
    ("kfp.dsl.executor_main", "kfp.local tasks"),
    ("chromium", "browser"),
    ("playwright", "browser"),
    ("mypy", "mypy"),
    ("xdist", "pytest"),
    ("pytest", "pytest"),
    ("airflow", "airflow"),
    ("flyte", "flyte"),
    (" build ", "bentoml build"),
)
"""A process's kind: the first of these whose text is in its command line (``circusd`` is the
title ``bentoml serve``'s arbiter gives itself)."""


def kind_of(command: str) -> str:
    """The kind of the process whose command line (arguments joined by spaces) is ``command``."""
    for text, kind in KINDS:
        if text in f"{command} ":
            return kind
    program = Path(command.split(" ", 1)[0]).name.rstrip(":")
    return f"other: {program}" if program else "other"


class ProcessSampler:
    """Samples the CPU of every process under ``root`` until stopped; keeps each process's last
    figure and its kind, read again while it is ``other`` (an xdist worker, started as
    ``python -c``, takes its title later) and kept once known (an arbiter's title changes too)."""

    def __init__(self, root: int, every: float = SAMPLE_SECONDS) -> None:
        self.root = root
        self.every = every
        self.seen: dict[tuple[int, float], tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                root = psutil.Process(self.root)
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                processes = []
            for process in processes:
                try:
                    with process.oneshot():
                        key = (process.pid, process.create_time())
                        times = process.cpu_times()
                        known = self.seen.get(key)
                        kind = known[0] if known else "other"
                        if kind.startswith("other"):
                            kind = kind_of(" ".join(process.cmdline()))
                except psutil.Error:
                    continue
                self.seen[key] = (kind, times.user + times.system)
            self._stop.wait(self.every)

    def by_kind(self) -> tuple[dict[str, float], Counter[str]]:
        """CPU seconds and process counts by kind."""
        cpu: dict[str, float] = {}
        count: Counter[str] = Counter()
        for kind, seconds in self.seen.values():
            cpu[kind] = cpu.get(kind, 0.0) + seconds
            count[kind] += 1
        return cpu, count


def breakdown(cpu: Mapping[str, float], count: Mapping[str, int]) -> str:
    """The table of CPU seconds by kind of process, most first, with the sampled total."""
    header, total = "CPU by kind of process", "sampled in all"
    width = max([len(kind) for kind in cpu] + [len(header), len(total)])
    rows = [f"{header:<{width}}    CPU-s  processes"]
    for kind, seconds in sorted(cpu.items(), key=lambda item: (-item[1], item[0])):
        rows.append(f"{kind:<{width}}  {seconds:7.1f}  {count[kind]:9d}")
    rows.append(f"{total:<{width}}  {sum(cpu.values()):7.1f}  {sum(count.values()):9d}")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    by_command = os.environ.get(BY_COMMAND_ENV) == "1"
    if argv[:1] == ["--by-command"]:
        by_command, argv = True, argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m tests.meter [--by-command] -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bentoship-meter-") as folder:
        ledger = Path(os.environ.get(LEDGER_ENV) or Path(folder) / "serve-starts")
        ledger.touch()
        before = len(ledger.read_text().splitlines())
        env = {**os.environ, LEDGER_ENV: str(ledger)}
        started = time.monotonic()
        with subprocess.Popen(argv, env=env) as command:
            sampler = ProcessSampler(command.pid) if by_command else None
            if sampler:
                sampler.start()
            try:
                code = command.wait()
            except BaseException:
                command.kill()
                raise
            finally:
                if sampler:
                    sampler.stop()
        wall = time.monotonic() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        starts = len(ledger.read_text().splitlines()) - before
    cpu = usage.ru_utime + usage.ru_stime
    if sampler:
        print(breakdown(*sampler.by_kind()))
    print(
        f"cost: {int(wall) // 60} min {int(wall) % 60} s wall, {cpu:.0f} CPU-seconds "
        f"({usage.ru_utime:.0f} user + {usage.ru_stime:.0f} sys), {starts} bentoml serve starts"
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
