"""Printing the figures, their ratios to the bare stages, the JSON file and the plot."""

from __future__ import annotations

import json
from pathlib import Path

# taskgate's figure per mode -> the bare stages it is compared with
BASELINES = {
    "embedded": ("flask_waitress_req_per_s", "commit_sqlite_txn_per_s"),
    "split": (
        "flask_gunicorn_req_per_s",
        "commit_postgresql_txn_per_s",
        "kombu_publish_confirmed_msg_per_s",
        "kombu_consume_msg_per_s",
    ),
}
COLUMNS = (
    ("offered", 13),
    ("accepted/s", 11),
    ("delivered/s", 12),
    ("p50 ms", 8),
    ("p95 ms", 8),
    ("p99 ms", 8),
    ("backlog", 8),
    ("undrained", 10),
    ("cpu ms/task", 12),
    ("+ servers", 10),
    ("max RSS MiB", 12),
)


def peak(points: list[dict], mode: str) -> dict | None:
    """The mode's point with the most results delivered per second."""
    candidates = [point for point in points if point["mode"] == mode]
    return max(candidates, key=lambda point: point["delivered_per_s"], default=None)


def ratios(points: list[dict], stages: dict) -> dict:
    table = {}
    for mode, baselines in BASELINES.items():
        best = peak(points, mode)
        if best is None or not stages:
            continue
        table[mode] = {
            "delivered_per_s": best["delivered_per_s"],
            "at": best["label"],
            **{
                name: round(best["delivered_per_s"] / stages[name], 3)
                for name in baselines
                if stages.get(name)
            },
        }
    return table


def pipeline_ratios(points: list[dict]) -> list[dict]:
    """Each taskgate point as a ratio to the bare pipeline at the same offered rate: to the mean of
    its points at that rate (run before and after taskgate's), figure by figure (the issue's
    targets: CPU per task <= 2x, p50 and p99 <= 3x, the most delivered per second >= 0.6x)."""
    bare: dict[float | None, list[dict]] = {}
    for point in points:
        if point["mode"] == "bare":
            bare.setdefault(point["rate"], []).append(point)
    table = []
    for point in points:
        yardsticks = bare.get(point["rate"])
        if point["mode"] == "bare" or not yardsticks:
            continue
        table.append(
            {
                "label": point["label"],
                **{
                    name: _ratio(figure(point), _mean([figure(bare_point) for bare_point in yardsticks]))
                    for name, figure in FIGURES.items()
                },
            }
        )
    return table


def _cpu(point: dict) -> float:
    """CPU per task of every process and server the mode runs."""
    return point["cpu_ms_per_task"] + (point.get("services_cpu_ms_per_task") or 0.0)


# The figures compared with the bare pipeline's, by name in pipeline_ratios.
FIGURES = {
    "cpu": _cpu,
    "p50": lambda point: point["p50_ms"],
    "p99": lambda point: point["p99_ms"],
    "delivered_per_s": lambda point: point["delivered_per_s"],
}


def _mean(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else round(value / base, 2)


def print_pipeline_ratios(table: list[dict]) -> None:
    if not table:
        return
    print(
        "\ntaskgate as a ratio to the bare pipeline at the same offered rate (all processes and servers;"
        " to the mean of its points before and after taskgate's)"
    )
    print(f"  {'point':<18} {'cpu/task':>9} {'p50':>7} {'p99':>7} {'delivered/s':>12}")
    for row in table:
        cells = [_times(row[name]) for name in ("cpu", "p50", "p99", "delivered_per_s")]
        print(f"  {row['label']:<18} {cells[0]:>9} {cells[1]:>7} {cells[2]:>7} {cells[3]:>12}")


def print_counts(points: list[dict]) -> None:
    """Statements, commits and outbox messages per task, how busy the machine's CPUs were, and the
    hops' p50/p99."""
    print(
        "\nper task: PostgreSQL statements and commits, outbox messages; the share of the machine's CPUs"
        " busy (every process and server, load to drain); hops p50/p99 ms (webhook: request sent -> its"
        " 202 back, at the load generator)"
    )
    for point in points:
        counted = " ".join(
            f"{name} {_number(point.get(f'{name}_per_task'))}"
            for name in ("statements", "commits", "commit_statements", "outbox_messages")
        )
        spreads = {"webhook": {"p50": point.get("webhook_p50_ms"), "p99": point.get("webhook_p99_ms")}}
        spreads.update(point.get("hops_ms") or {})
        hops = ", ".join(
            f"{hop} {_number(spread['p50'])}/{_number(spread['p99'])}" for hop, spread in spreads.items()
        )
        busy = point.get("machine_busy")
        busy = "" if busy is None else f"; CPUs busy {busy:.0%}"
        print(f"  {point['label']:<18} {counted}{busy}; {hops}")


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_stages(stages: dict) -> None:
    print("\nbare stages")
    for name, value in stages.items():
        print(f"  {name:38} {value:>10}")


def print_points(points: list[dict], layouts: dict[str, str]) -> None:
    for mode in layouts:
        mine = [point for point in points if point["mode"] == mode]
        if not mine:
            continue
        print(f"\n{mode}: {layouts[mode]}")
        print("  " + " ".join(f"{title:>{width}}" for title, width in COLUMNS))
        for point in mine:
            print(
                "  "
                + " ".join(
                    f"{value:>{width}}" for value, (_, width) in zip(_row(point), COLUMNS, strict=True)
                )
            )
        print("  peak RSS per process (MiB), at the last point: " + _rss(mine[-1]))


def _row(point: dict) -> list[str]:
    taskgate = [process for process in point["processes"] if process["role"] == "taskgate"]
    return [
        (str(int(point["rate"])) if point["rate"] else "unpaced") + (" again" if point.get("again") else ""),
        f"{point['accepted_per_s']:.0f}",
        f"{point['delivered_per_s']:.0f}",
        _number(point["p50_ms"]),
        _number(point["p95_ms"]),
        _number(point["p99_ms"]),
        str(point["backlog_at_end"]),
        str(point["backlog_after_drain"]),
        f"{point['cpu_ms_per_task']:.2f}",
        f"{point['services_cpu_ms_per_task']:.2f}" if point.get("services_cpu_ms_per_task") else "-",
        f"{max((process['peak_rss_mib'] for process in taskgate), default=0):.0f}",
    ]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _rss(point: dict) -> str:
    return ", ".join(
        f"{process['process']} {process['peak_rss_mib']:.0f}"
        for process in point["processes"]
        if process["role"] == "taskgate"
    )


def print_ratios(table: dict) -> None:
    if not table:
        return
    print("\ntaskgate's peak delivered results/s as a share of the bare stages")
    for mode, row in table.items():
        shares = ", ".join(
            f"{name} {value:.2f}x" for name, value in row.items() if name not in ("delivered_per_s", "at")
        )
        print(f"  {mode} ({row['delivered_per_s']:.0f}/s at {row['at']}): {shares}")


def write_json(result: dict, results_dir: Path, name: str, latest: bool) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    text = json.dumps(result, indent=2)
    path.write_text(text)
    if latest:
        (results_dir / "latest.json").write_text(text)
    return path


def plot(points: list[dict], path: Path, title: str) -> None:
    """Throughput (accepted, delivered) and p99 against offered load, one line per mode; an unpaced
    point is drawn at the rate it reached, as a lone marker."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (throughput, latency) = pyplot.subplots(1, 2, figsize=(12, 4.5))
    for mode, color in (("embedded", "tab:blue"), ("split", "tab:orange")):
        paced = sorted(
            (point for point in points if point["mode"] == mode and point["rate"]), key=lambda p: p["rate"]
        )
        unpaced = [point for point in points if point["mode"] == mode and not point["rate"]]
        if paced:
            rates = [point["rate"] for point in paced]
            throughput.plot(
                rates, [p["accepted_per_s"] for p in paced], "o-", color=color, label=f"{mode} accepted"
            )
            throughput.plot(
                rates, [p["delivered_per_s"] for p in paced], "s--", color=color, label=f"{mode} delivered"
            )
            latency.plot(rates, [p["p99_ms"] or float("nan") for p in paced], "o-", color=color, label=mode)
        for point in unpaced:
            throughput.plot(
                [point["accepted_per_s"]],
                [point["delivered_per_s"]],
                "*",
                ms=14,
                color=color,
                label=f"{mode} unpaced",
            )
            latency.plot(
                [point["accepted_per_s"]], [point["p99_ms"] or float("nan")], "*", ms=14, color=color
            )
    offered = [point["rate"] for point in points if point["rate"]]
    if offered:
        throughput.plot([0, max(offered)], [0, max(offered)], ":", color="grey", label="offered")
    throughput.set(xlabel="offered load (tasks/s)", ylabel="tasks/s, results/s", title="throughput")
    latency.set(
        xlabel="offered load (tasks/s)",
        ylabel="p99 webhook -> callback (ms)",
        title="p99 latency",
        yscale="log",
    )
    for axes in (throughput, latency):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
