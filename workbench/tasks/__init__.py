"""Seeded tasks (synthetic, and real text). Each is a frozen dataclass with ``sample(batch_size, generator)``."""

from ..dataclass_io import check_keys
from .associative_recall import AssociativeRecall
from .base import Task, TaskBatch, TaskConfig
from .canaries import Canaries
from .code_execution import CodeExecution
from .listops import ListOps
from .mqar import MQAR
from .mqar_mixture import MQARMixture
from .retrieval import Retrieval, RetrievalBatch
from .text import TextLM
from .text_canaries import TextCanaries

TASKS = {cls.NAME: cls for cls in (AssociativeRecall, Canaries, CodeExecution, ListOps, MQAR, MQARMixture, Retrieval, TextLM, TextCanaries)}


def task_from_dict(data: dict) -> Task:
    """Rebuild a task from its ``to_dict()``."""
    data = dict(data)
    name = data.pop("name", None)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name](**check_keys(TASKS[name], data))


__all__ = ["AssociativeRecall", "Canaries", "CodeExecution", "ListOps", "MQAR", "MQARMixture", "Retrieval", "RetrievalBatch", "TASKS", "TextCanaries", "TextLM", "Task", "TaskBatch", "TaskConfig",
           "task_from_dict"]
