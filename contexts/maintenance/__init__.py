"""Maintenance: workshop positions (bays) booked for cars."""
