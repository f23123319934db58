"""The machine's speed the benchmark prints with every run."""

from bench import machine


def test_a_round_trip_to_another_process_is_timed_and_the_other_process_ends():
    # round_trip_us waits for its echo process, which ends once the socket closes (or it raises).
    assert machine.round_trip_us(round_trips=200) > 0


def test_the_figures_are_described_in_their_units():
    text = machine.describe({"loop_seconds": 0.31, "round_trip_us": 24.4})
    assert text == "a 5,000,000-step Python loop 0.31 s, a round trip between two processes 24 µs"
