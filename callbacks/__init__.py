"""Lightning callbacks for AutoML runs (installed as ``lit_automl.callbacks``)."""

from .drop_path import ScheduledDropPath
from .genotype_logger import GenotypeLogger, edge_entropy

__all__ = ["GenotypeLogger", "ScheduledDropPath", "edge_entropy"]
