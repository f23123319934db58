"""Turning stored rows into the JSON the API promises."""

from __future__ import annotations

from gateway import schemas


def task_representation(task: dict, self_url: str) -> dict:
    return schemas.Task().dump({**task, "links": {"self": self_url}})
