"""Gaussian-process Bayesian optimisation as an Optuna sampler (Snoek et al. 2012; Brochu et al. 2010)."""
