"""Bounded contexts. Each owns its tables and talks to the others only through messages."""
