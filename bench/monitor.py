"""Peak RSS and CPU time of the processes under test, sampled with psutil in a background thread.

Children count too (gunicorn's workers): a worker gunicorn replaces keeps the CPU time of its
last sample, so recycled workers are not lost."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter

import psutil

from bench.procs import Process

MIB = 1024 * 1024


@dataclasses.dataclass
class Sampled:
    name: str
    role: str
    peak_rss: int = 0
    cpu_at_mark: float = 0.0
    cpu_last: float = 0.0


@dataclasses.dataclass(frozen=True)
class Server:
    """A server process the bench did not start (PostgreSQL's postmaster, RabbitMQ's VM), watched
    with its children so that the CPU the servers spend on taskgate's behalf is counted too."""

    name: str
    pid: int
    role: str = "service"


def local_servers() -> list[Server]:
    """The local PostgreSQL and RabbitMQ servers (by process name); none that are not running."""
    found = []
    for handle in psutil.process_iter(["name", "ppid"]):
        name = handle.info["name"] or ""
        if name == "beam.smp":
            found.append(Server("rabbitmq", handle.pid))
        elif name in ("postgres", "postmaster"):
            try:
                parent = psutil.Process(handle.info["ppid"]).name()
            except psutil.Error:
                continue
            if parent not in ("postgres", "postmaster"):
                found.append(Server("postgresql", handle.pid))
    return found


class Monitor:
    def __init__(self, processes: list[Process | Server], interval: float = 0.25):
        self.roots = list(processes)
        self.interval = interval
        self.sampled: dict[int, Sampled] = {}
        self._handles: dict[int, psutil.Process] = {}
        self._names: dict[int, str] = {}
        self._children_seen: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, process: Process | Server) -> None:
        self.roots.append(process)
        self.sample()

    def mark(self) -> None:
        """Start counting CPU time from now (after the warm-up)."""
        self.sample()
        with self._lock:
            for sampled in self.sampled.values():
                sampled.cpu_at_mark = sampled.cpu_last

    def cpu_seconds(self, role: str) -> float:
        """CPU seconds used since mark() by the processes of role."""
        self.sample()
        with self._lock:
            return sum(s.cpu_last - s.cpu_at_mark for s in self.sampled.values() if s.role == role)

    def cpu_seconds_by_root(self, role: str) -> dict[str, float]:
        """cpu_seconds(role), per watched root (a root's children count towards it)."""
        self.sample()
        totals: Counter[str] = Counter()
        with self._lock:
            for sampled in self.sampled.values():
                if sampled.role == role:
                    totals[sampled.name.split(".")[0]] += sampled.cpu_last - sampled.cpu_at_mark
        return dict(totals)

    def report(self) -> list[dict]:
        with self._lock:
            return [
                {
                    "process": sampled.name,
                    "pid": pid,
                    "role": sampled.role,
                    "peak_rss_mib": round(sampled.peak_rss / MIB, 1),
                    "cpu_seconds": round(sampled.cpu_last - sampled.cpu_at_mark, 2),
                }
                for pid, sampled in self.sampled.items()
            ]

    def sample(self) -> None:
        for root in list(self.roots):
            for handle, name in self._tree(root):
                try:
                    with handle.oneshot():
                        rss = handle.memory_info().rss
                        times = handle.cpu_times()
                except psutil.Error:  # exited between listing and sampling
                    continue
                with self._lock:
                    sampled = self.sampled.setdefault(handle.pid, Sampled(name, root.role))
                    sampled.peak_rss = max(sampled.peak_rss, rss)
                    sampled.cpu_last = times.user + times.system

    def _tree(self, root: Process | Server) -> list[tuple[psutil.Process, str]]:
        handle = self._handle(root.pid)
        if handle is None:
            return []
        try:
            children = handle.children(recursive=True)
        except psutil.Error:
            return []
        tree = [(handle, root.name)]
        for child in children:
            if child.pid not in self._names:
                self._children_seen[root.name] += 1
                self._names[child.pid] = f"{root.name}.worker{self._children_seen[root.name]}"
            tree.append((self._handles.setdefault(child.pid, child), self._names[child.pid]))
        return tree

    def _handle(self, pid: int) -> psutil.Process | None:
        if pid not in self._handles:
            try:
                self._handles[pid] = psutil.Process(pid)
            except psutil.Error:
                return None
        return self._handles[pid]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
