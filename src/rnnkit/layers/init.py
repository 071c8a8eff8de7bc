"""The former name of ``rnnkit.layers.initialisation`` (``init`` read as ``__init__``), kept
importable for the modules that still import it."""

from rnnkit.layers.initialisation import chrono_init_

__all__ = ["chrono_init_"]
