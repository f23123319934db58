"""Customers: the master record of each client's customers; publishes their changes as events."""
