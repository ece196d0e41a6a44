"""Datasets and the training loop (single process and DistributedDataParallel). Imports ``models``."""

from .loop import OPTIMIZERS, SCHEDULES, TrainConfig, main_from_args, train  # noqa: F401
