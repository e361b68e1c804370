"""Lion (Chen et al. 2023) for lightning_llm. Importing this package registers the ``optim`` plugin
``lion``; lightning_llm imports it through the ``lightning_llm.plugins`` entry point, and
``python -m lightning_llm optim=lion`` then selects it."""

import lightning_llm

# The lightning_llm API used here (register, the optim contract) is that of 0.1.x. On another version this
# import fails, and lightning_llm reports the package by name and skips it instead of misbehaving later.
if not lightning_llm.__version__.startswith("0.1."):
    raise ImportError(f"llm-lion supports lightning_llm 0.1.x, found {lightning_llm.__version__}")

from llm_lion.lion import Lion, lion  # noqa: E402 - registers after the version check

__all__ = ["Lion", "lion"]
__version__ = "0.1.0"
