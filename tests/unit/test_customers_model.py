from contexts.customers.model import Customer, upsert


def test_a_new_customer_is_registered_at_version_1():
    decision = upsert(None, "C-1", "Ada", "ada@example.com")
    assert decision.outcome == "customer.registered"
    assert decision.changed
    assert decision.customer == Customer("C-1", "Ada", "ada@example.com", 1)


def test_a_change_raises_the_version():
    existing = Customer("C-1", "Ada", "ada@example.com", 3)
    decision = upsert(existing, "C-1", "Ada", "ada@lovelace.org")
    assert decision.outcome == "customer.updated"
    assert decision.changed
    assert decision.customer.version == 4
    assert decision.customer.email == "ada@lovelace.org"


def test_the_same_data_again_changes_nothing():
    existing = Customer("C-1", "Ada", "ada@example.com", 3)
    decision = upsert(existing, "C-1", "Ada", "ada@example.com")
    assert decision.outcome == "customer.updated"
    assert not decision.changed
    assert decision.customer is existing


def test_an_upsert_accepted_before_the_stored_one_changes_nothing():
    existing = Customer("C-1", "Ada", "ada@new.example", 2, seq=5)
    decision = upsert(existing, "C-1", "Ada", "ada@old.example", seq=3)
    assert decision.superseded and not decision.changed
    assert decision.customer is existing


def test_a_later_upsert_takes_its_place_even_when_nothing_else_changes():
    existing = Customer("C-1", "Ada", "ada@example.com", 2, seq=5)
    same = upsert(existing, "C-1", "Ada", "ada@example.com", seq=7)
    assert not same.changed and not same.superseded
    assert same.customer == Customer("C-1", "Ada", "ada@example.com", 2, seq=7)
    changed = upsert(existing, "C-1", "Ada", "ada@new.example", seq=6)
    assert changed.customer == Customer("C-1", "Ada", "ada@new.example", 3, seq=6)


def test_an_upsert_without_a_place_applies_as_it_comes():
    existing = Customer("C-1", "Ada", "ada@example.com", 2, seq=5)
    decision = upsert(existing, "C-1", "Ada", "ada@new.example")
    assert decision.changed and decision.customer == Customer("C-1", "Ada", "ada@new.example", 3, seq=5)
