"""The course of a visit (contexts.visits.model), answer by answer."""

import pytest

from contexts.visits.model import (
    ANSWER,
    BOOKED,
    CANCELED,
    CONFIRM,
    CONFIRMING,
    HOLDING,
    REJECTED,
    RELEASE,
    RELEASING,
    Visit,
)


def run(visit: Visit, *answers):
    """Apply (side, step[, reason]) answers in turn; the visit and every action taken."""
    actions = []
    for answer in answers:
        visit, action = visit.answered(*answer)
        actions.append(action)
    return visit, actions


def test_both_held_then_both_confirmed_books_the_visit():
    visit, actions = run(
        Visit(),
        ("appointment", "held"),
        ("maintenance", "held"),
        ("maintenance", "confirmed"),
        ("appointment", "confirmed"),
    )
    assert actions == [None, CONFIRM, None, ANSWER]
    assert visit.state == BOOKED


def test_a_refusal_releases_both_and_answers_once_both_released_with_its_reason():
    visit, actions = run(
        Visit(),
        ("appointment", "held"),
        ("maintenance", "refused", "position_busy"),
        ("appointment", "released"),
    )
    assert actions == [None, RELEASE, None]
    assert (visit.state, visit.reason) == (RELEASING, "position_busy")
    visit, action = visit.answered("maintenance", "released")
    assert (visit.state, action, visit.reason) == (REJECTED, ANSWER, "position_busy")


def test_the_first_refusal_gives_the_reason_and_a_second_changes_nothing():
    visit, actions = run(
        Visit(), ("appointment", "refused", "resource_busy"), ("maintenance", "refused", "position_busy")
    )
    assert actions == [RELEASE, None]
    assert visit.reason == "resource_busy"


@pytest.mark.parametrize("confirmed_first", [True, False])
def test_an_expired_hold_rejects_the_visit_as_reservation_expired(confirmed_first):
    visit, _ = run(Visit(), ("appointment", "held"), ("maintenance", "held"))
    assert visit.state == CONFIRMING
    answers = [("appointment", "confirmed"), ("maintenance", "expired")]
    visit, actions = run(visit, *(answers if confirmed_first else answers[::-1]))
    assert RELEASE in actions and ANSWER not in actions
    assert (visit.state, visit.reason) == (RELEASING, "reservation_expired")
    visit, actions = run(visit, ("appointment", "released"), ("maintenance", "released"))
    assert (visit.state, actions) == (REJECTED, [None, ANSWER])


def test_an_expiry_while_holding_releases_too():
    visit, actions = run(Visit(), ("maintenance", "held"), ("maintenance", "expired"))
    assert (visit.state, visit.reason, actions) == (RELEASING, "reservation_expired", [None, RELEASE])


def test_answers_only_move_forward_so_repeats_and_stragglers_change_nothing():
    visit, _ = run(Visit(), ("appointment", "held"), ("maintenance", "held"))
    again, action = visit.answered("appointment", "held")
    assert (again, action) == (visit, None)
    visit, _ = run(visit, ("appointment", "confirmed"), ("maintenance", "confirmed"))
    late, action = visit.answered("maintenance", "held")  # a redelivered hold's answer
    assert (late.state, action) == (BOOKED, None)


def test_a_cancel_releases_a_booked_visit_and_ends_it_canceled():
    visit, _ = run(
        Visit(),
        ("appointment", "held"),
        ("maintenance", "held"),
        ("appointment", "confirmed"),
        ("maintenance", "confirmed"),
    )
    visit, action = visit.cancel()
    assert (visit.state, action, visit.canceling) == (RELEASING, RELEASE, True)
    visit, actions = run(visit, ("appointment", "released"), ("maintenance", "released"))
    assert (visit.state, actions) == (CANCELED, [None, ANSWER])
    assert visit.cancel() == (visit, None)  # a second cancel: nothing to cancel


def test_a_visit_not_booked_cannot_be_canceled():
    assert Visit().cancel() == (Visit(), None)
    assert Visit().state == HOLDING


def test_an_unknown_answer_is_an_error():
    with pytest.raises(ValueError):
        Visit().answered("desk", "held")
