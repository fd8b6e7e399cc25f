"""Issue 14, the search methods: every failure answered in one clear message, nothing silently ignored.

Each case asserts the exception class (or warning) and that the message names the bad value and what
is allowed or expected. Warm-ups not shorter than the run, genotypes of alphas that never moved,
non-finite data in a search step, inputs too small for the supernet's reductions, SNAS's FLOP probe
against the data's size, settings the data contradicts, unused settings, damaged checkpoint files,
and the RL reward explained where it is first printed.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import pytorch_lightning as pl
import torch

from lit_automl.callbacks import GenotypeLogger
from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
from lit_automl.nas.child import ChildClassifier
from lit_automl.nas.darts import DARTS
from lit_automl.nas.evaluator import describe_reward
from lit_automl.nas.pc_darts import PCDARTS
from lit_automl.nas.pdarts import PDARTS, fit_stages
from lit_automl.nas.retrain import Retrain
from lit_automl.nas.rl_search import RLSearch
from lit_automl.nas.snas import SNAS
from lit_automl.spaces.genotype import GenotypeParseError
from lit_automl.spaces.networks import NetworkCIFAR, NetworkImageNet, SearchNetwork
from lit_automl.spaces.published import get_genotype
from tests.nas.synthetic_search import MatchEvaluator, tiny_chain_space

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(C=4, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1, alpha_lr=0.05)
PC_TINY = dict(TINY, partial_channels=2)
PD_TWO = dict(TINY, stage_layers=(3, 4), stage_num_ops=(8, 3), stage_skip_dropout=(0.0, 0.3))
PD_TWO.pop("layers")


def digits(batch_size: int = 16) -> BilevelDataModule:
    return BilevelDataModule(DigitsDataModule(batch_size=batch_size, seed=0), seed=0)


def trainer(root, **kw) -> pl.Trainer:
    kw = {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 0, "logger": False,
          "enable_checkpointing": False, **kw}
    return pl.Trainer(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=root, num_sanity_val_steps=0, **kw)


def warnings_matching(record, text: str):
    return [str(w.message) for w in record if text in str(w.message)]


def paired_batch(n: int = 4, size: int = 8, nan: str = ""):
    """A DARTS batch of digits-shaped random images; ``nan`` names the half whose images hold a NaN."""
    g = torch.Generator().manual_seed(0)
    halves = {}
    for half in ("train", "val"):
        x, y = torch.randn(n, 1, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)
        if half == nan:
            x[0, 0, 0, 0] = float("nan")
        halves[half] = (x, y)
    return halves


# ----------------------------------------------------------------------------- warm-up vs run length
@pytest.mark.parametrize("cls, kwargs, label", [
    (PCDARTS, dict(PC_TINY), "PCDARTS: arch_warmup_epochs=15"),  # the paper's default warm-up, a 1-epoch run
    (DARTS, dict(TINY, arch_warmup_epochs=1), "DARTS: arch_warmup_epochs=1"),
    (PDARTS, dict(PD_TWO, arch_warmup_epochs=3), "PDARTS stage 1/2: arch_warmup_epochs=3"),
])
def test_a_warm_up_not_shorter_than_the_run_is_warned_at_fit_start(tmp_path, cls, kwargs, label):
    m = cls(**kwargs)
    m.trainer = trainer(tmp_path, max_epochs=1)
    with pytest.warns(UserWarning, match=rf"^{label} is not shorter than Trainer\(max_epochs=1\): the architecture "
                                         r"parameters are never trained in this run.*set arch_warmup_epochs < max_epochs"):
        m.on_fit_start()


def test_a_warm_up_shorter_than_the_run_is_not_warned(tmp_path):
    m = DARTS(**TINY, arch_warmup_epochs=1)
    m.trainer = trainer(tmp_path, max_epochs=2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        m.on_fit_start()
    assert not warnings_matching(record, "arch_warmup_epochs")


# ----------------------------------------------------------------------------- genotype of unmoved alphas
def test_the_final_genotype_of_alphas_that_never_moved_is_not_announced_as_a_result(tmp_path, caplog):
    m = PCDARTS(**PC_TINY)  # arch_warmup_epochs=15 >= max_epochs=1: the alphas never train
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer(tmp_path, callbacks=[GenotypeLogger(dirpath=tmp_path / "run", plot=False)]).fit(m, digits())
    assert m.architecture_changed() is False
    said = warnings_matching(record, "never changed")
    assert len(said) == 1 and said[0].startswith("PCDARTS's architecture parameters never changed from their initial "
                                                 "values, so the genotype written to")
    assert "random initialisation's, not a search result" in said[0] and "arch_warmup_epochs" in said[0]
    assert "Final genotype" not in caplog.text and (tmp_path / "run" / "genotype.txt").is_file()


def test_a_search_whose_alphas_moved_announces_its_final_genotype(tmp_path, caplog):
    m = PCDARTS(**{**PC_TINY, "arch_warmup_epochs": 0})
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer(tmp_path, callbacks=[GenotypeLogger(dirpath=tmp_path / "run", plot=False)]).fit(m, digits())
    assert m.architecture_changed() is True
    assert not warnings_matching(record, "never changed") and "Final genotype (written to" in caplog.text


def test_p_darts_says_which_stage_chose_its_ops_from_unmoved_alphas(tmp_path):
    m = PDARTS(**PD_TWO, arch_warmup_epochs=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit_stages(m, lambda stage: trainer(tmp_path / f"s{stage}"), datamodule=digits())
    said = warnings_matching(record, "never changed")
    assert said[0] == ("P-DARTS stage 1/2: the architecture parameters never changed from their initial values, so the "
                       "ops kept for stage 2 were chosen by their random initialisation")
    assert said[1].startswith("P-DARTS stage 2/2: the architecture parameters never changed from their initial values, "
                              "so its genotype is their random initialisation's, not a search result: Genotype(")


def test_initial_architecture_travels_in_checkpoints():
    torch.manual_seed(0)
    m = DARTS(**TINY)  # its alphas never move
    saved: dict = {}
    m.on_save_checkpoint(saved)
    torch.manual_seed(1)
    resumed = DARTS(**TINY)
    resumed.load_state_dict(m.state_dict())
    assert resumed.architecture_changed() is True  # against its own random start: the wrong answer
    resumed.on_load_checkpoint(saved)
    assert resumed.architecture_changed() is False  # against the start the checkpoint recorded
    resumed.on_load_checkpoint({})  # a checkpoint written before the initial values were saved: unknown, not False
    assert resumed.architecture_changed() is None


# ----------------------------------------------------------------------------- non-finite data in a search step
def _step(m, batch):
    m.hparams.epochs = 1  # a cosine schedule without a Trainer
    optimizers, _ = m.configure_optimizers()
    return m.search_step(batch, optimizers)


@pytest.mark.parametrize("order, half, what", [
    (1, "val", "architecture loss"),  # phase 1 runs on the val half
    (2, "train", "architecture loss"),  # second order's virtual step reads the train half first
    (1, "train", "training loss"),
])
def test_nan_images_are_named_as_the_cause_not_a_diverged_search(order, half, what):
    m = DARTS(**TINY, order=order)
    with pytest.raises(FloatingPointError, match=rf"^DARTS: the input images of this batch hold 1 non-finite values "
                                                 rf"\(of \d+\) at epoch 0, batch 0, so the {what} is nan: the data is "
                                                 r"at fault, not the search"):
        _step(m, paired_batch(nan=half))


def test_snas_names_nan_images_too():
    m = SNAS(**TINY)
    x, y = paired_batch(nan="train")["train"]
    with pytest.raises(FloatingPointError, match=r"^SNAS: the input images of this batch hold 1 non-finite values"):
        _step(m, (x, y))


def test_non_finite_alphas_are_named_with_their_learning_rate():
    m = DARTS(**TINY, order=1)
    with torch.no_grad():
        m.alpha_reduce[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"^DARTS search diverged: the architecture parameters "
                                                 r"\['alpha_reduce'\] are not finite at epoch 0, batch 0 \(the inputs "
                                                 r"are finite\); lower alpha_lr=0.05"):
        _step(m, paired_batch())


# ----------------------------------------------------------------------------- inputs too small for the reductions
@pytest.mark.parametrize("size", [1, 3])
def test_supernet_refuses_images_smaller_than_its_reductions_allow(size):
    m = DARTS(**TINY)  # 3 cells: reductions at cells 1 and 2
    with pytest.raises(ValueError, match=rf"^input of {size}x{size} is too small: this network needs at least 4x4 "
                                         r"\(it halves the input 2 times, in stride-2 reductions\)$"):
        m(torch.zeros(2, 1, size, size))


def test_one_reduction_needs_2x2_and_evaluation_networks_count_their_stems():
    net = SearchNetwork(C=4, layers=1, steps=2, multiplier=2, in_channels=1)
    ones = torch.ones(net.alpha_shape)
    assert net(torch.zeros(2, 1, 2, 2), ones, ones).shape == (2, 10)  # the smallest allowed size runs
    with pytest.raises(ValueError, match=r"1x1 is too small: this network needs at least 2x2 \(it halves the input 1 times"):
        net(torch.zeros(2, 1, 1, 1), ones, ones)
    cifar = NetworkCIFAR(get_genotype("DARTS_V2"), C=4, layers=3, auxiliary=False, in_channels=1).eval()
    with pytest.raises(ValueError, match=r"input of 2x2 is too small: this network needs at least 4x4"):
        cifar(torch.zeros(1, 1, 2, 2))
    imagenet = NetworkImageNet(get_genotype("DARTS_V2"), C=4, layers=3, auxiliary=False, num_classes=5).eval()
    with pytest.raises(ValueError, match=r"input of 16x16 is too small: this network needs at least 32x32 \(it halves "
                                         r"the input 5 times"):
        imagenet(torch.zeros(1, 3, 16, 16))


# ----------------------------------------------------------------------------- SNAS's FLOP probe vs the data
def test_snas_refuses_images_of_another_size_than_its_flop_probe():
    m = SNAS(**TINY, resource="flops")  # input_size=32 (CIFAR), 8x8 images below
    x, y = paired_batch()["train"]
    with pytest.raises(ValueError, match=r"^SNAS counted its FLOP costs on 32x32 inputs \(input_size=32\) but the "
                                         r"training images are 8x8: set input_size to the images' size$"):
        _step(m, (x, y))


def test_snas_refuses_a_flop_probe_other_than_the_datamodules_image_size_at_setup(tmp_path):
    m = SNAS(**TINY, resource="flops", input_size=16)
    with pytest.raises(ValueError, match=r"^SNAS was built with input_size=16 but the datamodule DigitsDataModule has "
                                         r"image_size=8: set input_size=8$"):
        trainer(tmp_path).fit(m, DigitsDataModule(batch_size=16))


def test_snas_logs_the_expected_cost_of_a_resource_without_weight():
    m = SNAS(**TINY, resource="params")  # resource_weight=0: unconstrained, but the cost is not computed for nothing
    metrics = _step(m, paired_batch()["train"])
    assert metrics["snas/expected_cost"] > 0


# ----------------------------------------------------------------------------- settings the data contradicts
def test_a_supernet_built_for_other_classes_than_the_data_is_refused_at_setup(tmp_path):
    m = DARTS(**TINY, num_classes=5)
    with pytest.raises(ValueError, match=r"^DARTS was built with num_classes=5 but the datamodule BilevelDataModule has "
                                         r"num_classes=10: set num_classes=10$"):
        trainer(tmp_path).fit(m, digits())


def test_a_child_classifier_for_other_classes_than_the_data_is_refused_at_setup(tmp_path):
    m = Retrain("DARTS_V2", C=4, layers=3, num_classes=3, in_channels=1, auxiliary=False, drop_path_prob=0.0)
    with pytest.raises(ValueError, match=r"^Retrain was built with num_classes=3 but the datamodule DigitsDataModule has "
                                         r"num_classes=10: set num_classes=10$"):
        trainer(tmp_path).fit(m, DigitsDataModule(batch_size=16))


def test_a_nan_child_loss_names_the_images():
    child = ChildClassifier(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)), num_classes=3)
    x = torch.zeros(2, 1, 2, 2)
    x[1, 0, 1, 1] = float("nan")
    with pytest.raises(FloatingPointError, match=r"child training loss is nan at epoch 0, batch 4; the input images of "
                                                 r"this batch hold 1 non-finite values: the data is at fault"):
        child.training_step((x, torch.tensor([0, 1])), 4)


# ----------------------------------------------------------------------------- unused settings
def test_darts_refuses_a_finite_difference_step_first_order_does_not_take():
    with pytest.raises(ValueError, match=r"^unrolled_eps is the finite-difference step of the second-order gradient: "
                                         r"order=1 does not use it \(leave it at 0.01 or set order=2\), got "
                                         r"unrolled_eps=0.1$"):
        DARTS(**TINY, order=1, unrolled_eps=0.1)


# ----------------------------------------------------------------------------- damaged checkpoint files
def test_p_darts_names_a_damaged_stage_checkpoint_without_suggesting_unsafe_loading(tmp_path):
    bad = tmp_path / "stage.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=rf"^P-DARTS stage checkpoint '{bad}' is not a torch.save archive \(the file is "
                                         r"damaged or not a checkpoint\); expected a checkpoint written by Trainer.fit") as info:
        PDARTS(**PD_TWO).for_checkpoint(bad)
    assert "weights_only=False" not in str(info.value)
    with pytest.raises(FileNotFoundError, match=rf"^P-DARTS stage checkpoint '{tmp_path / 'gone.ckpt'}': no such file; "
                                                r"expected"):
        fit_stages(PDARTS(**PD_TWO), lambda stage: trainer(tmp_path), ckpt_path=tmp_path / "gone.ckpt")


def test_retrain_names_a_genotype_file_that_is_not_text(tmp_path):
    bad = tmp_path / "cell.txt"
    bad.write_bytes(bytes(range(128, 256)))
    with pytest.raises(GenotypeParseError, match=rf"^genotype file {bad} is not UTF-8 text \(expected a genotype in the "
                                                 r"text form Genotype\(normal=\[\.\.\.\], \.\.\.\) or its JSON\)"):
        Retrain(str(bad), C=4, layers=3, in_channels=1)


# ----------------------------------------------------------------------------- the RL reward, explained
@pytest.mark.parametrize("reward, budget, text", [
    ("max_last5_cubed", 50, "(max validation accuracy of the last 5 of 50 child epochs)^3"),
    ("max_last5_cubed", 3, "(max validation accuracy over all 3 child epochs)^3"),
    ("max_last5", 1, "validation accuracy after the 1 child epoch"),
    ("final", 20, "validation accuracy after the last of 20 child epochs"),
])
def test_the_reward_is_described_from_its_settings(reward, budget, text):
    assert describe_reward(reward, budget) == text


def test_an_unknown_reward_lists_the_defined_ones():
    with pytest.raises(ValueError, match=r"^reward must be one of \['c_over_ppl', 'c_over_ppl_squared', 'final', 'max_last5', 'max_last5_cubed'\], "
                                         r"got 'top1'$"):
        describe_reward("top1", 5)


def test_an_rl_search_explains_its_reward_before_printing_one(tmp_path, caplog):
    space = tiny_chain_space()
    search = RLSearch(MatchEvaluator(space), children_per_step=2, budget=2, hidden_size=8, num_layers=1,
                      steps_per_epoch=1, storage=f"sqlite:///{tmp_path / 'children.db'}", study_name="s")
    caplog.set_level(logging.INFO)
    trainer(tmp_path, logger=pl.loggers.CSVLogger(tmp_path)).fit(search)
    first = caplog.text.index("RLSearch: reward = (max validation accuracy over all 2 child epochs)^3 "
                              "(reward='max_last5_cubed'), 2 children per controller step")
    assert first < caplog.text.index("best child: reward ")
    assert "= (max validation accuracy over all 2 child epochs)^3 (trial" in caplog.text
