"""Issue 14, the meta-learners: a model whose outputs do not fit the tasks is refused before any step, with
both values named (not torch's ``IndexError: Target 5 is out of bounds``), and settings a configuration
does not use are refused instead of ignored."""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl

from lit_automl.datamodules import DigitsTasksDataModule, SinusoidDataModule
from lit_automl.meta import MAML, ConvNet4, Leap, Reptile, SinusoidMLP
from tests.meta.synthetic import PrototypeTaskData

pytestmark = pytest.mark.usefixtures("single_thread")

TASKS = dict(k_shot=1, q_queries=2, tasks_per_batch=2, train_batches=1, val_tasks=2, test_tasks=2)


def trainer(tmp_path, **kw) -> pl.Trainer:
    kw = {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 0, **kw}
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                      enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0, **kw)


@pytest.mark.parametrize("outputs", [3, 8])  # too few outputs fail inside torch; too many train unused ones silently
def test_a_model_with_other_outputs_than_the_datamodules_n_way_is_refused(tmp_path, outputs):
    m = MAML(ConvNet4(n_way=outputs, hidden=4, blocks=2), loss="cross_entropy", inner_lr=0.4)
    with pytest.raises(ValueError, match=rf"^MAML: ConvNet4 outputs {outputs} classes but the datamodule's tasks are "
                                         rf"5-way \(n_way=5\): build the model with n_way=5 outputs or set the "
                                         rf"datamodule's n_way={outputs}$"):
        trainer(tmp_path).fit(m, DigitsTasksDataModule(n_way=5, **TASKS))


def test_without_a_declared_n_way_the_labels_bound_the_outputs(tmp_path):
    m = Reptile(ConvNet4(n_way=3, hidden=4, blocks=2), inner_steps=1)
    with pytest.raises(ValueError, match=r"^Reptile: the tasks' labels go up to 4 but ConvNet4 outputs 3 classes: build "
                                         r"the model with one output per class of a task \(n_way=5\)$"):
        trainer(tmp_path).fit(m, PrototypeTaskData(tasks=2))


def test_evaluation_alone_checks_the_outputs_too(tmp_path):
    m = Leap(ConvNet4(n_way=4, hidden=4, blocks=2), inner_steps=1, eval_inner_steps=1)
    with pytest.raises(ValueError, match=r"^Leap: ConvNet4 outputs 4 classes but the datamodule's tasks are 5-way"):
        trainer(tmp_path, limit_val_batches=1).validate(m, DigitsTasksDataModule(n_way=5, **TASKS), verbose=False)


def test_a_regression_model_with_other_outputs_than_the_targets_is_refused(tmp_path):
    m = MAML(SinusoidMLP(hidden=(8,), out_features=2))
    with pytest.raises(ValueError, match=r"^MAML: SinusoidMLP outputs shape \(2,\) per example but the task targets "
                                         r"have shape \(1,\): build the model with matching outputs$"):
        trainer(tmp_path).fit(m, SinusoidDataModule(k_shot=2, q_queries=2, tasks_per_batch=2, train_batches=1))


def test_reptile_refuses_adam_betas_with_inner_sgd():
    with pytest.raises(ValueError, match=r"^inner_betas are the inner Adam's: inner_optimizer='sgd' does not use them "
                                         r"\(leave them at \(0.0, 0.999\) or set inner_optimizer='adam'\), got "
                                         r"inner_betas=\(0.9, 0.999\)$"):
        Reptile(ConvNet4(), inner_optimizer="sgd", inner_betas=(0.9, 0.999))


def test_reptile_refuses_betas_that_are_not_a_pair():
    with pytest.raises(ValueError, match=r"^inner_betas must be a pair \(beta1, beta2\) of numbers in \[0, 1\), got "
                                         r"\(0.0, 0.9, 0.999\)$"):
        Reptile(ConvNet4(), inner_betas=(0.0, 0.9, 0.999))


def test_reptile_says_once_when_its_inner_batch_is_larger_than_a_task(tmp_path):
    m = Reptile(ConvNet4(n_way=5, hidden=4, blocks=2), inner_steps=1, inner_batch_size=50)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer(tmp_path, limit_train_batches=2).fit(m, PrototypeTaskData(tasks=4))
    said = [str(w.message) for w in record if "inner_batch_size" in str(w.message)]
    assert said == ["Reptile: inner_batch_size=50 exceeds the 20 examples of a task (support and query together): "
                    "each inner step uses all 20"]


def test_leap_refuses_a_stabilizer_setting_without_the_loss_dimension():
    with pytest.raises(ValueError, match=r"^stabilizer acts on the loss increments, which loss_in_manifold=False leaves "
                                         r"out: stabilizer=False is not used"):
        Leap(ConvNet4(), loss_in_manifold=False, stabilizer=False)
