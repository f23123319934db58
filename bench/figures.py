"""From what the load generator sent and what the receiver got to the figures of one point."""

from __future__ import annotations

from collections import defaultdict

from bench.workload import RESULTS_PER_TYPE

ACCEPTED = (200, 202)  # 200: a retried request whose first try had been accepted
REFUSED = (429, 503)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def expected_results(sent: dict) -> dict[str, int]:
    """task_id -> result callbacks the accepted task must cause."""
    return {
        task_id: RESULTS_PER_TYPE[kind]
        for task_id, kind, status in zip(sent["task_id"], sent["type"], sent["status"], strict=True)
        if status in ACCEPTED
    }


def arrivals_of(received: dict, tasks: dict[str, int]) -> dict[str, list[float]]:
    arrivals = defaultdict(list)
    for task_id, arrived in zip(received["task_id"], received["arrived"], strict=True):
        if task_id in tasks:
            arrivals[task_id].append(arrived)
    return arrivals


def backlog(expected: dict[str, int], arrivals: dict[str, list[float]], at: float) -> int:
    """Accepted tasks with results still to be delivered at time at."""
    return sum(
        1 for task_id, count in expected.items() if sum(t <= at for t in arrivals.get(task_id, ())) < count
    )


def point_figures(sent: dict, received: dict, drained_at: float) -> dict:
    started, finished = sent["started"], sent["finished"]
    elapsed = finished - started
    expected = expected_results(sent)
    arrivals = arrivals_of(received, expected)
    due = dict(zip(sent["task_id"], sent["due"], strict=True))
    latencies = [arrived - due[task_id] for task_id, times in arrivals.items() for arrived in times]
    answer_times = [answered - at for answered, at in zip(sent["answered"], sent["sent"], strict=True)]
    statuses = sent["status"]
    ms = 1000.0
    return {
        "sent": len(statuses),
        "accepted": len(expected),
        "refused": sum(status in REFUSED for status in statuses),
        "errors": sum(status not in ACCEPTED + REFUSED for status in statuses),
        "send_seconds": round(elapsed, 2),
        "accepted_per_s": round(len(expected) / elapsed, 1),
        "delivered_per_s": round(
            sum(t <= finished for times in arrivals.values() for t in times) / elapsed, 1
        ),
        "results_expected": sum(expected.values()),
        "results_delivered": len(latencies),
        "p50_ms": _ms(percentile(latencies, 0.50), ms),
        "p95_ms": _ms(percentile(latencies, 0.95), ms),
        "p99_ms": _ms(percentile(latencies, 0.99), ms),
        "max_ms": _ms(max(latencies, default=None), ms),
        "webhook_p50_ms": _ms(percentile(answer_times, 0.50), ms),
        "webhook_p99_ms": _ms(percentile(answer_times, 0.99), ms),
        "backlog_at_end": backlog(expected, arrivals, finished),
        "backlog_after_drain": backlog(expected, arrivals, drained_at),
        "drain_seconds": round(max(0.0, drained_at - finished), 2),
        "loadgen_cpu_seconds": round(sent["cpu_seconds"], 2),
        "bad_signatures": received["bad_signatures"],
    }


def _ms(seconds: float | None, ms: float) -> float | None:
    return None if seconds is None else round(seconds * ms, 1)
