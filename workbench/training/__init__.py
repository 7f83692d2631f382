"""Training: the loop (``trainer``), runs as data (``run_config``: one JSON file per run; ``recipes``: the
named runs of the bundled checkpoints) and the text-model command (``text``). Every entry point writes its
run directory through :mod:`workbench.run_dir`."""

from .resume import resuming
from .trainer import (OPTIMIZERS, STOP_REASONS, TrainConfig, TrainResult, evaluate, lr_at, make_optimizer, masked_loss,
                      run_record, stop_reason, train)

__all__ = ["OPTIMIZERS", "STOP_REASONS", "TrainConfig", "TrainResult", "evaluate", "lr_at", "make_optimizer", "masked_loss", "resuming",
           "run_record", "stop_reason", "train"]
