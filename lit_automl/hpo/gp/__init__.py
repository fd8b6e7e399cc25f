"""Gaussian-process Bayesian optimisation as an Optuna sampler (Snoek et al. 2012; Brochu et al. 2010)."""

from lit_automl.hpo.gp.acquisition import ACQUISITIONS, PENDING_STRATEGIES, XI_SCHEDULES, gp_ucb_kappa
from lit_automl.hpo.gp.gp import GPParams, GPRegressor, fit_map, sample_hyperparameters
from lit_automl.hpo.gp.kernels import KERNELS, ArcKernel, Kernel
from lit_automl.hpo.gp.optimize import OPTIMIZERS, maximize_acquisition
from lit_automl.hpo.gp.sampler import CONDITIONAL_MODES, HYPERPARAMETER_METHODS, GPSampler, UnmodelledParameterWarning
from lit_automl.hpo.gp.search_space import SearchSpace
from lit_automl.hpo.gp.slice_sampling import slice_sample

__all__ = [
    "ACQUISITIONS",
    "CONDITIONAL_MODES",
    "HYPERPARAMETER_METHODS",
    "KERNELS",
    "OPTIMIZERS",
    "PENDING_STRATEGIES",
    "XI_SCHEDULES",
    "GPParams",
    "GPRegressor",
    "ArcKernel",
    "GPSampler",
    "Kernel",
    "SearchSpace",
    "UnmodelledParameterWarning",
    "fit_map",
    "gp_ucb_kappa",
    "maximize_acquisition",
    "sample_hyperparameters",
    "slice_sample",
]
