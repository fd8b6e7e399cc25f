"""Lightning callbacks for AutoML runs (installed as ``lit_automl.callbacks``)."""

from .drop_path import ScheduledDropPath
from .genotype_logger import GenotypeLogger

__all__ = ["GenotypeLogger", "ScheduledDropPath"]
