"""Logging: JSON lines on stderr (human-readable on a terminal); task fields travel as extras."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

HUMAN = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _HumanFormatter(logging.Formatter):
    """Appends the task fields a JSON line would carry, so a terminal shows them too."""

    FIELDS = ("task_id", "task_uuid", "message_id", "causation_id", "result_id")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{name}={getattr(record, name)}" for name in self.FIELDS if hasattr(record, name)]
        return f"{line} [{' '.join(extras)}]" if extras else line


def configure(level: str = "INFO", stream=None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if stream.isatty():
        handler.setFormatter(_HumanFormatter(HUMAN))
    else:
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that narrate their routine work (alembic each migration step) speak up from WARNING on.
    for noisy in ("alembic", "amqp", "kombu", "urllib3", "waitress.queue"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
