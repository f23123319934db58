"""gunicorn settings for taskgate's HTTP side; `gunicorn wsgi:app` reads this file from the working
directory. Command-line options (e.g. --bind, --workers) take precedence."""

import multiprocessing
import os
import shutil

bind = os.environ.get("TASKGATE_HTTP_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("TASKGATE_HTTP_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = "gthread"
threads = int(os.environ.get("TASKGATE_HTTP_THREADS", "4"))
# A webhook request is short; on SIGTERM a worker finishes the requests it has (a 202 is only
# sent after the commit) within graceful_timeout, then exits.
timeout = 30
graceful_timeout = 30
keepalive = 5
max_requests = 10_000
max_requests_jitter = 1_000


def on_starting(server):
    """With PROMETHEUS_MULTIPROC_DIR set, /metrics sums every worker: start from an empty directory."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def post_fork(server, worker):
    """Before the worker starts its threads (see taskgate.memory)."""
    from taskgate.memory import limit_malloc_arenas

    limit_malloc_arenas()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
