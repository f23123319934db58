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
