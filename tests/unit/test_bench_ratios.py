"""The benchmark's ratios to the bare pipeline: to the mean of its points before and after."""

from bench.report import pipeline_ratios


def point(mode, rate, *, cpu, servers, p50, p99, delivered, again=False):
    label = f"{mode}-{int(rate) if rate else 'unpaced'}" + ("-again" if again else "")
    return {
        "mode": mode,
        "rate": rate,
        "label": label,
        "again": again,
        "cpu_ms_per_task": cpu,
        "services_cpu_ms_per_task": servers,
        "p50_ms": p50,
        "p99_ms": p99,
        "delivered_per_s": delivered,
    }


def test_each_taskgate_point_is_compared_with_the_mean_of_the_bare_points_at_its_rate():
    points = [
        point("bare", 100.0, cpu=4.0, servers=2.0, p50=6.0, p99=20.0, delivered=100.0),
        point("split", 100.0, cpu=10.0, servers=5.0, p50=24.0, p99=60.0, delivered=100.0),
        point("bare", 100.0, cpu=6.0, servers=3.0, p50=10.0, p99=40.0, delivered=100.0, again=True),
        point("bare", None, cpu=3.0, servers=1.0, p50=900.0, p99=1000.0, delivered=300.0),
        point("split", None, cpu=6.0, servers=3.0, p50=300.0, p99=700.0, delivered=180.0),
    ]

    table = {row["label"]: row for row in pipeline_ratios(points)}

    assert set(table) == {"split-100", "split-unpaced"}
    # bare at 100/s: CPU (4 + 2 + 6 + 3) / 2 = 7.5, p50 8, p99 30, delivered 100
    assert table["split-100"] == {
        "label": "split-100",
        "cpu": 2.0,
        "p50": 3.0,
        "p99": 2.0,
        "delivered_per_s": 1.0,
    }
    # unpaced: one bare point only
    assert table["split-unpaced"]["cpu"] == 2.25
    assert table["split-unpaced"]["delivered_per_s"] == 0.6


def test_a_figure_missing_from_one_bare_point_is_the_other_ones():
    points = [
        point("bare", 100.0, cpu=4.0, servers=2.0, p50=None, p99=None, delivered=100.0),
        point("bare", 100.0, cpu=4.0, servers=2.0, p50=10.0, p99=30.0, delivered=100.0, again=True),
        point("embedded", 100.0, cpu=6.0, servers=0.0, p50=20.0, p99=30.0, delivered=100.0),
    ]

    (row,) = pipeline_ratios(points)

    assert (row["p50"], row["p99"], row["cpu"]) == (2.0, 1.0, 1.0)
