"""The `taskgate` command: one module per group of commands, each registering its commands on
the group in taskgate.cli.base."""

from taskgate.cli import admin, checks, client_tools, processes  # noqa: F401 (they register the commands)
from taskgate.cli.base import main

__all__ = ["main"]
