"""accelnas: accelerator-aware neural architecture search benchmarks."""

from accelnas.core.hookspecs import hookimpl
from accelnas.core.space import EFFICIENTNET_B0, Architecture, Stage

__version__ = "0.1.0"

__all__ = ["EFFICIENTNET_B0", "Architecture", "Stage", "__version__", "hookimpl"]
