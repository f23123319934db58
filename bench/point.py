"""One measured point: a fresh taskgate in one mode, a warm-up, then load at one rate (or unpaced)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench import counts, deployments, profiling
from bench.figures import point_figures
from bench.monitor import Monitor, local_servers
from bench.procs import Processes, free_port, http_get, wait_for
from bench.services import Services


@dataclasses.dataclass(frozen=True)
class Options:
    duration: float
    clients: int
    customers: int  # per client, registered in the warm-up
    connections: int
    http_workers: int
    log_level: str
    drain: float  # at most this long to wait, after the load, for the last callbacks
    unpaced_cap: int  # requests pre-built for an unpaced point, per second of duration
    max_unfinished: int  # TASKGATE_MAX_UNFINISHED_TASKS of the deployment under test
    max_undelivered: int  # TASKGATE_MAX_UNDELIVERED_CALLBACKS of the deployment under test
    settings: dict[str, str] = dataclasses.field(default_factory=dict)  # more TASKGATE_* under test
    profile_dir: Path | None = None


def run_point(
    mode: str, rate: float | None, options: Options, services: Services, run_dir: Path, *, again: bool = False
) -> dict:
    """One point: mode's deployment, started afresh, under rate (None: unpaced). again: the mode's
    second point at this rate in the run (the bare pipeline's, after taskgate's)."""
    label = f"{mode}-{int(rate) if rate else 'unpaced'}" + ("-again" if again else "")
    point_dir = run_dir / label
    point_dir.mkdir(parents=True)
    env = deployments.environment(
        mode,
        point_dir,
        services,
        http_workers=options.http_workers,
        log_level=options.log_level,
        max_unfinished=options.max_unfinished,
        max_undelivered=options.max_undelivered,
    )
    if mode != "bare":
        env.update(options.settings)
    deployments.prepare_storage(mode, env, services)
    receiver_port, port = free_port(), free_port()
    clients = deployments.register_clients(mode, env, options.clients, receiver_port)
    secrets = point_dir / "secrets.json"
    secrets.write_text(json.dumps({client.client_id: client.secret for client in clients}))
    plan = {
        "port": port,
        "clients": [dataclasses.asdict(client) for client in clients],
        "customers": options.customers,
        "run": label,
        "connections": options.connections,
        "duration": options.duration,
        "rate": rate,
        "max_tasks": int(options.unpaced_cap * options.duration),
    }
    with Processes(env, point_dir) as processes:
        receiver = processes.start(
            "receiver", _python("bench.receiver", str(receiver_port), str(secrets)), "harness"
        )
        taskgate = deployments.start(mode, processes, port)
        servers = local_servers() if mode in ("split", "bare") else []
        with Monitor([*taskgate, receiver, *servers]) as monitor:
            _warm_up(processes, plan, point_dir, receiver_port)
            on_postgresql = mode in ("split", "bare")
            if on_postgresql:
                services.analyze()
                counted = counts.snapshot(services.database_url)
            measured_since = datetime.now(UTC)
            monitor.mark()
            profiles: list[Path] = []
            with _profiling(options.profile_dir, taskgate, label, profiles):
                sent = _send(processes, {**plan, "phase": "measure"}, point_dir)
            warmup_results = options.clients * options.customers
            expected = warmup_results + sum(1 for status in sent["status"] if status in (200, 202))
            drained_at = _drain(receiver_port, expected, options.drain)
            cpu = monitor.cpu_seconds("taskgate")
            harness_cpu = monitor.cpu_seconds("harness")
            service_cpu = monitor.cpu_seconds_by_root("service")
            received = json.loads(http_get(receiver_port, "/_bench/records", timeout=30)[1])
            # Each server's processes are summed into services_cpu_ms_per_task, not listed.
            process_report = [process for process in monitor.report() if process["role"] != "service"]
    figures = point_figures(sent, received, drained_at)
    if on_postgresql:
        figures.update(counts.per_task(counted, services.database_url, figures["accepted"]))
    if mode != "bare":
        figures["hops_ms"] = counts.hops(_database_url(mode, env), measured_since)
    figures["cpu_ms_per_task"] = round(1000 * cpu / max(figures["accepted"], 1), 3)
    figures["receiver_cpu_seconds"] = round(harness_cpu, 2)
    # PostgreSQL's and RabbitMQ's CPU over the same span (split mode; the whole servers, so anything
    # else they serve meanwhile counts too).
    per_task = {name: 1000 * seconds / max(figures["accepted"], 1) for name, seconds in service_cpu.items()}
    figures["services_cpu_ms_per_task"] = round(sum(per_task.values()), 3)
    figures["services_cpu_ms_per_task_by_server"] = {name: round(ms, 3) for name, ms in per_task.items()}
    # How much of the machine's CPUs the point kept busy, from the load's start to the drain's end.
    spent = cpu + harness_cpu + figures.get("loadgen_cpu_seconds", 0.0) + sum(service_cpu.values())
    span = figures["send_seconds"] + figures["drain_seconds"]
    figures["machine_busy"] = round(spent / (span * (os.cpu_count() or 1)), 2) if span else None
    result = {"mode": mode, "rate": rate, "label": label, "again": again, **figures}
    result["processes"] = process_report
    if options.profile_dir:
        summary = profiling.summarize(profiling.read_stacks(profiles), figures["accepted"])
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        title = f"{label}: {deployments.layout(mode, options.http_workers)}\nload average at the end: {load}"
        text = profiling.render(summary, title, figures["cpu_ms_per_task"])
        (options.profile_dir / f"{label}.txt").write_text(text)
        result["profile"] = summary
    return result


def _database_url(mode: str, env: dict) -> str:
    if mode == "embedded":
        return f"sqlite:///{Path(env['TASKGATE_DATA_DIR']) / 'taskgate.db'}"
    return env["TASKGATE_DATABASE_URL"]


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _warm_up(processes: Processes, plan: dict, point_dir: Path, receiver_port: int) -> None:
    """Register every customer and wait for all their callbacks: the whole pipeline is up."""
    warmup = {**plan, "phase": "warmup", "rate": None, "duration": 120}
    sent = _send(processes, warmup, point_dir)
    accepted = sum(1 for status in sent["status"] if status == 202)
    if accepted != len(sent["status"]):
        statuses = dict(Counter(sent["status"]))
        raise RuntimeError(
            f"warm-up: {accepted} of {len(sent['status'])} customers accepted; statuses {statuses}"
        )
    wait_for(lambda: _callbacks(receiver_port) >= accepted, 120, "the warm-up's callbacks", interval=0.1)


def _send(processes: Processes, plan: dict, point_dir: Path) -> dict:
    """Run the load generator on plan and return what it sent."""
    plan_path = point_dir / f"plan-{plan['phase']}.json"
    out_path = point_dir / f"sent-{plan['phase']}.json"
    plan_path.write_text(json.dumps(plan))
    loadgen = processes.start(
        f"loadgen-{plan['phase']}", _python("bench.loadgen", str(plan_path), str(out_path)), "harness"
    )
    code = loadgen.wait(plan["duration"] + 120)
    if code != 0:
        raise RuntimeError(f"the load generator failed:\n{loadgen.log_path.read_text()[-2000:]}")
    return json.loads(out_path.read_text())


def _drain(receiver_port: int, expected: int, limit: float) -> float:
    """Wait until expected callbacks arrived or limit seconds passed; returns when it stopped."""
    with contextlib.suppress(TimeoutError):  # what is left is reported as backlog_after_drain
        wait_for(lambda: _callbacks(receiver_port) >= expected, limit, "the backlog to drain", interval=0.1)
    return time.monotonic()


def _callbacks(receiver_port: int) -> int:
    return json.loads(http_get(receiver_port, "/_bench/count")[1])["callbacks"]


@contextlib.contextmanager
def _profiling(profile_dir: Path | None, taskgate: list, label: str, written: list[Path]):
    """py-spy on the taskgate processes for the duration of the block (if profile_dir is set);
    the files it wrote are added to written, also if the block fails."""
    if profile_dir is None:
        yield
        return
    profiler = profiling.Profiler(taskgate, profile_dir, label)
    profiler.start()
    try:
        yield
    finally:
        written.extend(profiler.stop())
