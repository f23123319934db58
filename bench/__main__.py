"""`python -m bench`: taskgate's throughput and latency, beside a bare pipeline of the same stages
(--mode bare) and the bare stages it is made of.

Examples:
    python -m bench                                  # both modes, default rates, unpaced too, stages
    python -m bench --quick                          # a few seconds per point: a smoke run
    python -m bench --mode split --rates 500,1000 --duration 30
    python -m bench --profile --rates 300 --no-stages   # py-spy profiles into bench/profiles/
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import deployments, machine, report, stages
from bench.point import Options, run_point
from bench.services import Services

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=(*deployments.MODES, "all"), default="all")
    parser.add_argument(
        "--rates", default="100,200,400,600,800,1000", help="offered tasks/s, comma-separated"
    )
    parser.add_argument(
        "--unpaced",
        action="store_true",
        help="also one unpaced point per mode (two of the bare pipeline beside others)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per point")
    parser.add_argument("--quick", action="store_true", help="short smoke run: 3 s per point, rates 100,300")
    parser.add_argument(
        "--stages", action=argparse.BooleanOptionalAction, default=True, help="measure bare stages"
    )
    parser.add_argument("--stage-duration", type=float, default=5.0)
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the taskgate processes (into bench/profiles)"
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="client companies (callback concurrency is per client)"
    )
    parser.add_argument(
        "--customers", type=int, default=50, help="customers per client, registered in the warm-up"
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="keep-alive connections of the load generator"
    )
    parser.add_argument(
        "--http-workers", type=int, default=2, help="gunicorn workers (split mode, bare Flask)"
    )
    parser.add_argument(
        "--commit-processes", type=int, default=4, help="processes of the bare PostgreSQL commit"
    )
    parser.add_argument("--log-level", default="INFO", help="TASKGATE_LOG_LEVEL of the processes under test")
    parser.add_argument(
        "--drain", type=float, default=30.0, help="max seconds to wait for the backlog after the load"
    )
    parser.add_argument(
        "--max-unfinished",
        type=int,
        default=1000,
        help="TASKGATE_MAX_UNFINISHED_TASKS under test: the backlog beyond which the webhook refuses",
    )
    parser.add_argument(
        "--max-undelivered",
        type=int,
        default=1000,
        help="TASKGATE_MAX_UNDELIVERED_CALLBACKS under test: the callback backlog beyond which it refuses",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TASKGATE_NAME=VALUE",
        help="a setting of the deployment under test (repeatable), e.g. TASKGATE_BATCH_LINGER_MS=0",
    )
    parser.add_argument("--name", help="results file name (default: the start time)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--rabbitmq-url", default=os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs, databases)")
    args = parser.parse_args(argv)
    if any(not setting.startswith("TASKGATE_") or "=" not in setting for setting in args.set):
        parser.error("--set takes TASKGATE_NAME=VALUE")
    if args.quick:
        args.duration, args.stage_duration, args.drain = 3.0, 1.0, 10.0
        if args.rates == parser.get_default("rates"):
            args.rates = "100,300"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    modes = deployments.MODES if args.mode == "all" else (args.mode,)
    rates: list[float | None] = [float(rate) for rate in args.rates.split(",") if rate.strip()]
    if args.unpaced:
        rates.append(None)
    services = Services(args.postgres_url, args.rabbitmq_url)
    options = Options(
        duration=args.duration,
        clients=args.clients,
        customers=args.customers,
        connections=args.connections,
        http_workers=args.http_workers,
        log_level=args.log_level,
        drain=args.drain,
        unpaced_cap=3000,
        max_unfinished=args.max_unfinished,
        max_undelivered=args.max_undelivered,
        settings=dict(setting.split("=", 1) for setting in args.set),
        profile_dir=HERE / "profiles" if args.profile else None,
    )
    started_at = datetime.now(UTC)
    name = args.name or ("profile-" if args.profile else "") + started_at.strftime("%Y%m%dT%H%M%SZ")
    layouts = {mode: deployments.layout(mode, args.http_workers) for mode in modes}
    run_dir = Path(tempfile.mkdtemp(prefix="taskgate-bench-"))
    speed = [machine.speed()]
    print(f"run {name}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; logs in {run_dir}")
    print(f"  the machine's speed: {machine.describe(speed[0])}")
    for mode, text in layouts.items():
        print(f"  {mode}: {text}")
    try:
        bare = measure_stages(args, services, run_dir) if args.stages else {}
        points = []
        for rate in rates:
            for mode, again in run_order(modes):
                where = f"{int(rate) if rate else 'unpaced'}{' again' if again else ''}"
                print(f"  {mode} at {where} ...", flush=True)
                points.append(run_point(mode, rate, options, services, run_dir, again=again))
    except KeyboardInterrupt:
        print(f"interrupted; every process was stopped (logs in {run_dir})", file=sys.stderr)
        return 130
    except Exception:
        print(f"failed; every process was stopped, logs are in {run_dir}", file=sys.stderr)
        raise
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    speed.append(machine.speed())
    table = report.ratios(points, bare)
    pipeline = report.pipeline_ratios(points)
    if bare:
        report.print_stages(bare)
    report.print_points(points, layouts)
    report.print_counts(points)
    report.print_pipeline_ratios(pipeline)
    report.print_ratios(table)
    result = {
        "name": name,
        "started_at": started_at.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "speed": speed,  # before and after the run (bench.machine)
        },
        "load_average_at_end": os.getloadavg(),
        "options": vars(args),
        "layouts": layouts,
        "stages": bare,
        "points": points,
        "ratios": table,
        "pipeline_ratios": pipeline,
    }
    path = report.write_json(result, HERE / "results", name, latest=not args.profile)
    if not args.profile:
        report.plot(
            points, HERE / "results" / "plot.png", f"taskgate {name}: {os.cpu_count()} CPUs, local services"
        )
    print(f"\nthe machine's speed at the end: {machine.describe(speed[1])}")
    print(f"results: {path}" + ("" if args.profile else f", {HERE / 'results' / 'plot.png'}"))
    if args.profile:
        print(f"profiles: {HERE / 'profiles'}")
    return 0


def run_order(modes: tuple[str, ...]) -> list[tuple[str, bool]]:
    """The points of one rate, in order, each (mode, again): beside taskgate's modes the bare
    pipeline runs both before and after them, and their ratios are to the mean of the two, so that
    the machine's speed drifting during the run weighs on both sides alike."""
    if "bare" not in modes or len(modes) == 1:
        return [(mode, False) for mode in modes]
    return [("bare", False), *((mode, False) for mode in modes if mode != "bare"), ("bare", True)]


def measure_stages(args: argparse.Namespace, services: Services, run_dir: Path) -> dict:
    print("  bare stages ...", flush=True)
    started = time.monotonic()
    options = stages.StageOptions(
        args.stage_duration, args.connections, args.http_workers, args.commit_processes
    )
    bare = stages.measure_all(services, options, run_dir)
    print(f"  bare stages took {time.monotonic() - started:.0f} s", flush=True)
    return bare


if __name__ == "__main__":
    sys.exit(main())
