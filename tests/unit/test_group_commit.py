"""GroupCommit: every item written once, by one of the waiting threads, many to a transaction."""

from __future__ import annotations

import threading

import pytest

from messaging.group_commit import GroupCommit
from tests.factories import wait_for


def test_items_that_arrive_during_a_write_share_the_next_one():
    writes: list[list[int]] = []
    first_write_may_end = threading.Event()

    def write(items):
        writes.append(list(items))
        if len(writes) == 1:
            first_write_may_end.wait(30)

    group = GroupCommit(write)
    first = threading.Thread(target=group.submit, args=(0,))
    first.start()
    wait_for(lambda: writes, message="the first write")
    others = [threading.Thread(target=group.submit, args=(n,)) for n in range(1, 9)]
    for thread in others:
        thread.start()
    wait_for(lambda: len(group._waiting) == 8, message="eight items waiting")
    first_write_may_end.set()
    for thread in [first, *others]:
        thread.join(30)
    assert writes[0] == [0]
    assert sorted(writes[1]) == list(range(1, 9))
    assert len(writes) == 2


def test_everyone_in_a_failed_write_gets_its_error_and_the_next_write_goes_on():
    calls = []

    def write(items):
        calls.append(list(items))
        if items == ["bad"]:
            raise RuntimeError("database away")

    group = GroupCommit(write)
    with pytest.raises(RuntimeError, match="database away"):
        group.submit("bad")
    group.submit("good")
    assert calls == [["bad"], ["good"]]


def test_submit_nowait_returns_during_anothers_write_and_wait_writes_what_nobody_wrote():
    writes: list[list[str]] = []
    first_write_may_end = threading.Event()

    def write(items):
        writes.append(list(items))
        if items == ["first"]:
            first_write_may_end.wait(30)

    group = GroupCommit(write)
    first = threading.Thread(target=group.submit, args=("first",))
    first.start()
    wait_for(lambda: writes, message="the first write")
    queued = [group.submit_nowait(name) for name in ("a", "b")]  # return at once: a write is on
    assert not any(ticket.done for ticket in queued) and writes == [["first"]]
    first_write_may_end.set()
    first.join(30)
    assert not any(ticket.done for ticket in queued)  # the first writer wrote only its own
    group.wait(queued)  # nobody else writes them: this thread does, in one transaction
    assert writes == [["first"], ["a", "b"]]
    assert all(ticket.done and not ticket.failed for ticket in queued)


def test_submit_nowait_writes_at_once_when_nobody_writes_and_its_ticket_tells_a_failure():
    def write(items):
        if "bad" in items:
            raise RuntimeError("database away")

    group = GroupCommit(write)
    good = group.submit_nowait("good")
    assert good.done and not good.failed
    bad = group.submit_nowait("bad")
    assert bad.failed
    with pytest.raises(RuntimeError, match="database away"):
        group.wait([good, bad])
