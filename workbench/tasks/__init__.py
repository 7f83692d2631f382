"""Seeded synthetic tasks. Each is a frozen dataclass with ``sample(batch_size, generator)``."""

from .base import Task, TaskBatch
from .mqar import MQAR

TASKS = {"mqar": MQAR}


def task_from_dict(data: dict) -> Task:
    """Rebuild a task from its ``to_dict()``."""
    data = dict(data)
    name = data.pop("name", None)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name](**data)


__all__ = ["MQAR", "TASKS", "Task", "TaskBatch", "task_from_dict"]
