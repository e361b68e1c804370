"""Optimizers, weight-decay parameter groups and learning-rate schedules. Importing this package registers
the ``optim`` and ``scheduler`` plugins."""

from lightning_llm.optim.optimizers import adam, adamw, param_groups, sgd
from lightning_llm.optim.schedulers import constant, cosine, linear

__all__ = ["adam", "adamw", "constant", "cosine", "linear", "param_groups", "sgd"]
