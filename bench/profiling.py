"""Where taskgate's CPU goes: py-spy samples every taskgate process (and gunicorn's workers) while
the load runs; the samples are folded into a text summary per task.

py-spy runs with --gil: it samples only the thread holding the GIL, so a sample is a moment a
process was running Python code (or C code that keeps the GIL), and samples / rate approximates
CPU seconds. Without it, threads blocked in psycopg's or amqp's socket waits count as busy. The raw
files are collapsed stacks, which speedscope (https://www.speedscope.app) and flamegraph.pl open
as they are.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

from bench.procs import BIN, Process

RATE = 100  # samples per second
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>.*?)(?::\d+)?\)$")
PROJECT_PACKAGES = ("gateway", "messaging", "contexts", "taskgate", "wsgi.py")


class Profiler:
    """py-spy record on each process, from start() until stop()."""

    def __init__(self, processes: list[Process], out_dir: Path, label: str):
        self.processes = processes
        self.out_dir = out_dir
        self.label = label
        self._spies: list[tuple[subprocess.Popen, Path]] = []

    def start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for process in self.processes:
            raw = self.out_dir / f"{self.label}-{process.name}.collapsed.txt"
            args = [str(BIN / "py-spy"), "record", "--pid", str(process.pid), "--rate", str(RATE)]
            args += ["--format", "raw", "--output", str(raw), "--nonblocking", "--subprocesses", "--gil"]
            spy = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self._spies.append((spy, raw))

    def stop(self) -> list[Path]:
        """Stop sampling (py-spy writes its file on SIGINT); returns the files written."""
        written = []
        for spy, _ in self._spies:
            spy.send_signal(signal.SIGINT)
        for spy, raw in self._spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
            if raw.exists():
                written.append(raw)
        self._spies.clear()
        return written


def read_stacks(paths: list[Path]) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                frames = [_frame(frame) for frame in stack.split(";") if not frame.startswith("process ")]
                if frames:
                    stacks[tuple(frames)] += int(count)
    return stacks


def _frame(frame: str) -> str:
    """'function (package/file.py:123)' -> 'function (package/file.py)': lines apart, one function."""
    match = FRAME.match(frame)
    return f"{match['function']} ({match['file']})" if match else frame


def package_of(frame: str) -> str:
    match = FRAME.match(frame)
    path = match["file"] if match else frame
    top = path.split("/", 1)[0].removesuffix(".py")
    return top or "?"


def summarize(stacks: Counter[tuple[str, ...]], tasks: int, top: int = 25) -> dict:
    """Self and inclusive shares of the top functions, the share per package, CPU ms per task."""
    total = sum(stacks.values()) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for stack, count in stacks.items():
        own[stack[-1]] += count
        packages[package_of(stack[-1])] += count
        for frame in set(stack):
            inclusive[frame] += count
    project = Counter({frame: n for frame, n in inclusive.items() if package_of(frame) in _project_tops()})

    def shares(counter: Counter[str]) -> list[dict]:
        return [{"name": name, "percent": round(100 * n / total, 1)} for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "sampled_cpu_ms_per_task": round(1000 * total / RATE / max(tasks, 1), 3),
        "by_package": shares(packages),
        "self": shares(own),
        "inclusive_project": shares(project),
    }


def _project_tops() -> set[str]:
    return {package.removesuffix(".py") for package in PROJECT_PACKAGES}


def render(summary: dict, title: str, cpu_ms_per_task: float) -> str:
    lines = [
        title,
        f"samples: {summary['samples']} at {RATE} Hz = {summary['sampled_cpu_ms_per_task']} ms per task"
        f" holding the GIL, of {cpu_ms_per_task} ms CPU per task (psutil); the rest ran in C code"
        " without the GIL (sqlite3, libpq, sockets). Shares below are of the GIL samples.",
    ]
    for key, heading in (
        ("by_package", "self time by package"),
        ("self", "self time by function"),
        ("inclusive_project", "inclusive time of taskgate's own functions"),
    ):
        lines += ["", heading + ":"]
        lines += [f"  {entry['percent']:5.1f} %  {entry['name']}" for entry in summary[key]]
    return "\n".join(lines) + "\n"
