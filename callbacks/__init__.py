"""Lightning callbacks for AutoML runs (installed as ``lit_automl.callbacks``)."""

from .drop_path import ScheduledDropPath
from .genotype_logger import GenotypeLogger
from .optuna_pruning import OptunaPruning

__all__ = ["GenotypeLogger", "OptunaPruning", "ScheduledDropPath"]
from .darts_plus import DartsPlusEarlyStopping
from .hessian import HessianEigenvalueMonitor, darts_es_rule, dominant_hessian_eigenvalue

__all__ += ["DartsPlusEarlyStopping", "HessianEigenvalueMonitor", "darts_es_rule", "dominant_hessian_eigenvalue"]
from .skip_dropout import SkipDropoutDecay
from .temperature import TemperatureAnnealing

__all__ += ["SkipDropoutDecay", "TemperatureAnnealing"]
from .nt_asgd import NTASGD

__all__ += ["NTASGD"]
from .step_checkpoint import StepCheckpoint

__all__ += ["StepCheckpoint"]
