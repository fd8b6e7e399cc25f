"""Meta-learners on one functional inner loop (MAML / FOMAML, Reptile, LEAP), learned optimisers (L2L's LSTM,
PowerSign / AddSign, Chen et al.'s query RNN) and learning to simulate.

``RNNSampler`` (an Optuna sampler) and learning to simulate (whose policy update is ``lit_automl.nas``'s REINFORCE)
are imported on first use, so importing the meta-learners imports neither Optuna nor ``lit_automl.nas``.
"""

from typing import Any

from lit_automl.meta.base import AdaptedModel, MetaLearner
from lit_automl.meta.functional import InnerAdam, InnerSGD, inner_loop
from lit_automl.meta.l2l import CoordinateLSTM, L2LMetaTrainer, LSTMOptimizer
from lit_automl.meta.leap import Leap
from lit_automl.meta.maml import MAML
from lit_automl.meta.models import ConvNet4, SinusoidMLP
from lit_automl.meta.reptile import Reptile
from lit_automl.meta.gmm_simulator import GaussianMixtureSimulator

__all__ = ["AdaptedModel", "ConvNet4", "InnerAdam", "InnerSGD", "Leap", "MAML", "MetaLearner", "Reptile",
           "SinusoidMLP", "inner_loop"]
__all__ += ["CoordinateLSTM", "L2LMetaTrainer", "LSTMOptimizer"]
__all__ += ["GaussianMixtureSimulator", "GaussianPsiPolicy", "LearningToSimulate"]
from lit_automl.meta.digits_simulator import DigitsRenderer  # noqa: E402

__all__ += ["DigitsRenderer", "LearningToSimulateDigits", "SimulatorSearch"]
from lit_automl.meta.sign_optimizers import AddSign, PowerSign

__all__ += ["AddSign", "PowerSign"]
from lit_automl.meta.blackbox_rnn import BlackBoxRNN, GPPriorFunctions, QueryLSTM  # noqa: E402

__all__ += ["BlackBoxRNN", "GPPriorFunctions", "QueryLSTM", "RNNSampler"]


_LAZY = {"RNNSampler": "lit_automl.meta.rnn_sampler", "GaussianPsiPolicy": "lit_automl.meta.simulate",
         "LearningToSimulate": "lit_automl.meta.simulate", "LearningToSimulateDigits": "lit_automl.meta.simulate",
         "SimulatorSearch": "lit_automl.meta.simulate"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
