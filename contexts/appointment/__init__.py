"""Appointment: the authority for its calendar of resources."""
