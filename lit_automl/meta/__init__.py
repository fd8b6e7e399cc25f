"""Meta-learners on one functional inner loop: MAML / FOMAML, Reptile, LEAP."""

from lit_automl.meta.base import AdaptedModel, MetaLearner
from lit_automl.meta.functional import InnerAdam, InnerSGD, inner_loop
from lit_automl.meta.l2l import CoordinateLSTM, L2LMetaTrainer, LSTMOptimizer
from lit_automl.meta.leap import Leap
from lit_automl.meta.maml import MAML
from lit_automl.meta.models import ConvNet4, SinusoidMLP
from lit_automl.meta.reptile import Reptile
from lit_automl.meta.gmm_simulator import GaussianMixtureSimulator
from lit_automl.meta.simulate import GaussianPsiPolicy, LearningToSimulate

__all__ = ["AdaptedModel", "ConvNet4", "InnerAdam", "InnerSGD", "Leap", "MAML", "MetaLearner", "Reptile",
           "SinusoidMLP", "inner_loop"]
__all__ += ["CoordinateLSTM", "L2LMetaTrainer", "LSTMOptimizer"]
__all__ += ["GaussianMixtureSimulator", "GaussianPsiPolicy", "LearningToSimulate"]
from lit_automl.meta.sign_optimizers import AddSign, PowerSign

__all__ += ["AddSign", "PowerSign"]
from lit_automl.meta.blackbox_rnn import BlackBoxRNN, GPPriorFunctions, QueryLSTM  # noqa: E402
from lit_automl.meta.rnn_sampler import RNNSampler  # noqa: E402

__all__ += ["BlackBoxRNN", "GPPriorFunctions", "QueryLSTM", "RNNSampler"]
