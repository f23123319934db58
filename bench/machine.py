"""The machine's speed on the day, in two figures printed with every run: a plain Python loop
(the interpreter's speed) and a round trip between two processes over a socket (what every hop of
a pipeline pays in the kernel). Both drift from day to day and within a run on a shared machine;
ratios at a fixed offered rate depend on them wherever taskgate's side nears the machine's
capacity before the bare pipeline's does."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

LOOP_STEPS = 5_000_000
ROUND_TRIPS = 20_000

# The other end of the round trips: it answers each byte with one, until the socket closes.
_ECHO = """
import socket, sys
end = socket.socket(fileno=int(sys.argv[1]))
while end.recv(1):
    end.sendall(b"x")
"""


def loop_seconds() -> float:
    """Seconds a LOOP_STEPS-step loop of additions takes in this interpreter."""
    started = time.perf_counter()
    total = 0
    for step in range(LOOP_STEPS):
        total += step
    return round(time.perf_counter() - started, 3)


def round_trip_us(round_trips: int = ROUND_TRIPS) -> float:
    """Microseconds of one round trip of a byte to another process and back (a socket pair)."""
    ours, theirs = socket.socketpair()
    with ours:
        echo = subprocess.Popen(
            [sys.executable, "-c", _ECHO, str(theirs.fileno())], pass_fds=[theirs.fileno()]
        )
        theirs.close()
        ours.sendall(b"x")  # the first answer waits for the interpreter to start
        ours.recv(1)
        started = time.perf_counter()
        for _ in range(round_trips):
            ours.sendall(b"x")
            ours.recv(1)
        elapsed = time.perf_counter() - started
    echo.wait(10)  # it ends once our end of the socket is closed
    return round(elapsed / round_trips * 1e6, 1)


def speed() -> dict[str, float]:
    return {"loop_seconds": loop_seconds(), "round_trip_us": round_trip_us()}


def describe(figures: dict[str, float]) -> str:
    return (
        f"a {LOOP_STEPS:,}-step Python loop {figures['loop_seconds']:.2f} s,"
        f" a round trip between two processes {figures['round_trip_us']:.0f} µs"
    )
