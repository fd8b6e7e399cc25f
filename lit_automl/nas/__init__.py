"""Search methods: one LightningModule (or search loop) per method, plus retraining."""

from lit_automl.nas.child import ChildClassifier
from lit_automl.nas.controller import Controller, Decision
from lit_automl.nas.darts import DARTS
from lit_automl.nas.evaluator import Evaluator, TrainingEvaluator
from lit_automl.nas.nas_rl import NASRL
from lit_automl.nas.nasnet import NASNetSearch
from lit_automl.nas.policy_gradient import PPO, EMABaseline, Reinforce
from lit_automl.nas.retrain import Retrain
from lit_automl.nas.rl_search import RLSearch

__all__ = [
    "ChildClassifier", "Controller", "DARTS", "Decision", "EMABaseline", "Evaluator", "NASNetSearch", "NASRL", "PPO",
    "RLSearch", "Reinforce", "Retrain", "TrainingEvaluator",
]
from lit_automl.nas.bayesnas import BayesNAS
from lit_automl.nas.one_shot import OneShot
from lit_automl.nas.pc_darts import PCDARTS
from lit_automl.nas.pdarts import PDARTS, fit_stages
from lit_automl.nas.snas import SNAS, expected_resource_cost
from lit_automl.nas.supernet import SupernetSearch

__all__ += ["BayesNAS", "OneShot", "PCDARTS", "PDARTS", "SNAS", "SupernetSearch", "expected_resource_cost", "fit_stages"]
from lit_automl.nas.retrain_rnn import RetrainRNN

__all__ += ["RetrainRNN"]
from lit_automl.nas.darts_rnn import DARTSRecurrent

__all__ += ["DARTSRecurrent"]
from lit_automl.nas.enas import ENAS
from lit_automl.nas.enas_rnn import ENASRecurrent

__all__ += ["ENAS", "ENASRecurrent"]
from lit_automl.nas.lm_evaluator import LMTrainingEvaluator

__all__ += ["LMTrainingEvaluator"]
from lit_automl.nas.tabular import TabularEvaluator

__all__ += ["TabularEvaluator"]
from lit_automl.nas.child_search import ChildSearch
from lit_automl.nas.evolution import RandomSearch, RegularizedEvolution
from lit_automl.nas.sampler_search import SamplerSearch

__all__ += ["ChildSearch", "RandomSearch", "RegularizedEvolution", "SamplerSearch"]
from lit_automl.nas.one_shot_evaluator import OneShotEvaluator

__all__ += ["OneShotEvaluator"]
from lit_automl.nas.pnas import PNAS

__all__ += ["PNAS"]
from lit_automl.nas.update_rule_search import UpdateRuleEvaluator, UpdateRuleSpace
from lit_automl.nas.update_rules import UpdateRule, UpdateRuleOptimizer, parse_rule

__all__ += ["UpdateRule", "UpdateRuleEvaluator", "UpdateRuleOptimizer", "UpdateRuleSpace", "parse_rule"]
from lit_automl.nas.activation_search import ActivationEvaluator, ActivationSpace
from lit_automl.nas.activations import Activation, parse_activation

__all__ += ["Activation", "ActivationEvaluator", "ActivationSpace", "parse_activation"]
