"""The retrieval model of Schlag, Irie & Schmidhuber (2021), Sec. 6.1: one memory, one query read.

``model``: :class:`HookedRetriever` and its :class:`RetrieverConfig`; ``training``: its training loop
(:func:`train_retriever`); ``probe``: what each stored pair's memory read returns (:func:`probe_memory`).
The task is :class:`workbench.tasks.retrieval.Retrieval`.
"""

from .model import HookedRetriever, RetrieverConfig, read_memory
from .probe import probe_memory, summarize_probe
from .training import RetrieverTrainConfig, RetrieverTrainResult, evaluate_retriever, train_retriever

__all__ = ["HookedRetriever", "RetrieverConfig", "RetrieverTrainConfig", "RetrieverTrainResult", "evaluate_retriever",
           "probe_memory", "read_memory", "summarize_probe", "train_retriever"]
