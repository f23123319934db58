"""gunicorn settings for taskgate's HTTP side; `gunicorn wsgi:app` reads this file from the working
directory. Command-line options (e.g. --bind, --workers) take precedence."""

import multiprocessing
import os
from pathlib import Path


def _count(name: str, default: int) -> int:
    """A positive number from the environment variable name; else gunicorn stops, naming it."""
    text = os.environ.get(name) or str(default)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(f"{name}: expected a positive integer, not {text!r}")
    return value


bind = os.environ.get("TASKGATE_HTTP_BIND", "127.0.0.1:8080")
workers = _count("TASKGATE_HTTP_WORKERS", multiprocessing.cpu_count() * 2 + 1)
worker_class = "gthread"
threads = _count("TASKGATE_HTTP_THREADS", 4)
# A webhook request is short; on SIGTERM a worker finishes the requests it has (a 202 is only
# sent after the commit) within graceful_timeout, then exits.
timeout = 30
graceful_timeout = 30
keepalive = 5
max_requests = 10_000
max_requests_jitter = 1_000


def on_starting(server):
    """With PROMETHEUS_MULTIPROC_DIR set, /metrics sums the files of every process of the host: those
    of processes no longer running are an earlier run's; the `taskgate worker` processes that run
    beside gunicorn keep theirs."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for path in Path(directory).glob("*.db"):  # <kind>_<pid>.db
            pid = path.stem.rsplit("_", 1)[-1]
            if pid.isdigit() and not _running(int(pid)):
                path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def post_fork(server, worker):
    """Before the worker starts its threads (see taskgate.memory)."""
    from taskgate.memory import limit_malloc_arenas

    limit_malloc_arenas()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
