"""taskgate as the benchmark runs it.

- embedded: one `taskgate serve` process (waitress, 8 threads), SQLite in WAL mode, in-process broker.
- split: PostgreSQL + RabbitMQ; gunicorn with gunicorn.conf.py (gthread, HTTP_WORKERS workers x 4
  threads) and one `taskgate worker` process per entry of SPLIT_WORKERS.
- bare: the yardstick, bench.bare_pipeline on the same servers and the same gunicorn settings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import bare_pipeline, counts
from bench.procs import BIN, Process, Processes, clean_environment, run_command, wait_until_healthy
from bench.services import Services
from bench.workload import Client
from gateway.signatures import new_secret
from taskgate import registry

MODES = ("embedded", "split", "bare")
BARE_PROCESSES = ("relay", "worker", "dispatcher")
# As the README deploys them on one machine: two worker processes, each with the gateway beside
# its contexts (their results are recorded and called back in place), the busiest context (80 %
# of the workload's tasks) in one of them; see docs/performance.md, session 26.
SPLIT_WORKERS = (
    ("gateway", "survey"),
    tuple(name for name in registry.NAMES if name != "survey"),
)


def layout(mode: str, http_workers: int) -> str:
    if mode == "bare":
        return (
            f"gunicorn -c gunicorn.conf.py bench.bare_pipeline:app ({http_workers} workers) + "
            f"{len(BARE_PROCESSES)} x `python -m bench.bare_pipeline ...` ({', '.join(BARE_PROCESSES)}); "
            "PostgreSQL, RabbitMQ"
        )
    if mode == "embedded":
        return "1 x `taskgate serve` (HTTP on waitress + every worker; SQLite, in-process broker)"
    workers = ", ".join("+".join(contexts) for contexts in SPLIT_WORKERS)
    return (
        f"gunicorn -c gunicorn.conf.py ({http_workers} gthread workers x 4 threads) + "
        f"{len(SPLIT_WORKERS)} x `taskgate worker --context ...` ({workers}); PostgreSQL, RabbitMQ"
    )


def environment(
    mode: str,
    run_dir: Path,
    services: Services,
    *,
    http_workers: int,
    log_level: str,
    max_unfinished: int,
    max_undelivered: int,
) -> dict:
    env = clean_environment(
        TASKGATE_ALLOW_PRIVATE_CALLBACKS="1",  # the receiver listens on 127.0.0.1
        TASKGATE_LOG_LEVEL=log_level,
        TASKGATE_HTTP_WORKERS=str(http_workers),
        TASKGATE_MAX_UNFINISHED_TASKS=str(max_unfinished),
        TASKGATE_MAX_UNDELIVERED_CALLBACKS=str(max_undelivered),
    )
    if mode == "embedded":
        env["TASKGATE_DATA_DIR"] = str(run_dir / "data")
    elif mode == "bare":
        env["BENCH_DATABASE_URL"] = services.database_url
        env["BENCH_BROKER_URL"] = services.broker_url
        env["BENCH_CALLBACKS"] = str(run_dir / "callbacks.json")
    else:
        env["TASKGATE_DATABASE_URL"] = services.database_url
        env["TASKGATE_BROKER_URL"] = services.broker_url
        env["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir / "prometheus")  # as deployed: /metrics sums workers
        (run_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    return env


def prepare_storage(mode: str, env: dict, services: Services) -> None:
    """Empty database and queues; `serve` migrates SQLite itself, PostgreSQL is migrated here."""
    if mode in ("split", "bare"):
        services.fresh_database()
        services.fresh_vhost()
        counts.enable_statement_statistics(services.database_url)
    if mode == "split":
        run_command([str(BIN / "taskgate"), "db", "upgrade"], env)
    if mode == "bare":
        bare_pipeline.prepare(services.database_url, services.broker_url)


def register_clients(mode: str, env: dict, count: int, receiver_port: int) -> list[Client]:
    clients = []
    for number in range(count):
        client_id = f"bench-{number}"
        url = f"http://127.0.0.1:{receiver_port}/callbacks/{client_id}"
        if mode == "bare":  # no registry: the dispatcher reads its clients from a file
            clients.append(Client(client_id, new_secret()))
            continue
        out = run_command([str(BIN / "taskgate"), "clients", "add", client_id, "--callback-url", url], env)
        clients.append(Client(client_id, json.loads(out)["signing_secret"]))
    if mode == "bare":
        callbacks = {
            client.client_id: {
                "url": f"http://127.0.0.1:{receiver_port}/callbacks/{client.client_id}",
                "secret": client.secret,
            }
            for client in clients
        }
        Path(env["BENCH_CALLBACKS"]).write_text(json.dumps(callbacks))
    return clients


def start(mode: str, processes: Processes, port: int) -> list[Process]:
    """Start taskgate's processes and wait until HTTP answers; the workers prove themselves in the
    warm-up, whose tasks go all the way through."""
    if mode == "embedded":
        started = [processes.start("serve", [str(BIN / "taskgate"), "serve", "--port", str(port)])]
    elif mode == "bare":
        app = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
        started = [processes.start("gunicorn", [*app, "bench.bare_pipeline:app"])]
        for name in BARE_PROCESSES:
            started.append(processes.start(name, [sys.executable, "-m", "bench.bare_pipeline", name]))
    else:
        gunicorn = [
            str(BIN / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "wsgi:app",
        ]
        started = [processes.start("gunicorn", gunicorn)]
        for contexts in SPLIT_WORKERS:
            args = [str(BIN / "taskgate"), "worker"] + [f"--context={name}" for name in contexts]
            started.append(processes.start("worker-" + "+".join(contexts), args))
    wait_until_healthy(port, started[0])
    for process in started:
        process.check_running()
    return started
