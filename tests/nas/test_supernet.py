"""SupernetSearch, the base of the DARTS family: search_step without a Trainer, the one alpha-gradient
clip, the optimiser order, argument checks."""

import pytest
import pytorch_lightning as pl
import torch

from lit_automl._checks import ArgumentTypeError
from lit_automl.nas import DARTS, SNAS, BayesNAS, OneShot, PCDARTS, PDARTS, SupernetSearch
from lit_automl.nas.supernet import auto_memory_format

TINY = dict(C=4, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1)

pytestmark = pytest.mark.usefixtures("single_thread")


def paired_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    half = lambda: (torch.randn(6, 1, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g))  # noqa: E731
    return {"train": half(), "val": half()}


class OneBatch(pl.LightningDataModule):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def train_dataloader(self):
        return torch.utils.data.DataLoader([self.batch], batch_size=None)


@pytest.mark.parametrize("cls, batch", [(DARTS, paired_batch()), (SNAS, paired_batch()["train"])])
def test_search_step_without_a_trainer_equals_training_step(tmp_path, cls, batch):
    torch.manual_seed(0)
    a = cls(**TINY, alpha_lr=0.05, epochs=1)
    b = cls(**TINY, alpha_lr=0.05, epochs=1)
    b.load_state_dict(a.state_dict())
    metrics = b.search_step(batch, b.configure_optimizers()[0])
    assert set(metrics) >= {"train/loss", "train/acc"} and torch.isfinite(metrics["train/loss"])
    pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(a, OneBatch(batch))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-6, atol=1e-7, msg=k)
    assert not torch.equal(a.alpha_normal, cls(**TINY).alpha_normal)


def _stem_is_channels_last(module):
    w = module.model.stem[0].weight  # (C, 3, 3, 3): the two layouts differ
    return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def test_auto_memory_format_settles_once_on_the_device_and_is_reported(tmp_path, caplog):
    assert auto_memory_format("cpu") == "channels_last"
    assert auto_memory_format(torch.device("cuda", 0)) == "contiguous_format"  # not measured to win there
    m = DARTS(**TINY, epochs=1)
    assert m.memory_format_name is None and m.hparams.memory_format == "auto"
    with caplog.at_level("INFO"):
        pl.Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False).fit(m, OneBatch(paired_batch()))
    assert m.memory_format_name == "channels_last"
    assert "supernet memory layout channels_last (memory_format='auto' on cpu)" in caplog.text
    # 6 x 1 x 8 x 8 digits-sized inputs: far below the size where recomputing pays.
    assert m.model.recomputed_cells == () and "DARTS: checkpoint_cells='auto' recomputes no cell in backward" in caplog.text
    # Without a trainer, the first input's device decides; an explicit layout is never replaced.
    rgb = {**TINY, "in_channels": 3}
    plain = DARTS(**rgb)
    assert not _stem_is_channels_last(plain)
    plain(torch.randn(2, 3, 8, 8))
    assert plain.memory_format_name == "channels_last" and _stem_is_channels_last(plain)
    fixed = DARTS(**rgb, memory_format="contiguous_format")
    fixed(torch.randn(2, 3, 8, 8))
    assert fixed.memory_format_name == "contiguous_format" and not _stem_is_channels_last(fixed)


def test_alpha_grad_clip_bounds_the_architecture_gradient_norm():
    torch.manual_seed(0)
    m = DARTS(**TINY, order=1, alpha_grad_clip=1e-4, epochs=1)
    w_opt, a_opt = m.configure_optimizers()[0]
    seen = []
    a_opt.register_step_pre_hook(lambda opt, args, kwargs: seen.append(
        float(torch.cat([a.grad.flatten() for a in m.arch_parameters()]).norm())))
    grads, _ = m.architecture_gradient(*m.split_batch(paired_batch()), 0.0)
    assert float(torch.cat([g.flatten() for g in grads]).norm()) > 1e-3, "too small a gradient to see clipping"
    m.search_step(paired_batch(), (w_opt, a_opt))
    assert seen == [pytest.approx(1e-4, rel=1e-3)]


def test_alpha_grad_clip_defaults():
    assert DARTS(**TINY).hparams.alpha_grad_clip == 0.0
    assert PCDARTS(**TINY, partial_channels=2).hparams.alpha_grad_clip == 0.0
    assert SNAS(**TINY).hparams.alpha_grad_clip == 10.0
    assert PDARTS(**{k: v for k, v in TINY.items() if k != "layers"}, stage_layers=(3, 4), stage_num_ops=(8, 3),
                  stage_skip_dropout=(0.0, 0.3)).hparams.alpha_grad_clip == 5.0


def test_optimisers_in_their_documented_order():
    m = PCDARTS(**TINY, partial_channels=2, epochs=2)
    (w_opt, a_opt), (sched,) = m.configure_optimizers()
    assert isinstance(w_opt, torch.optim.SGD) and isinstance(a_opt, torch.optim.Adam)
    assert [id(p) for p in w_opt.param_groups[0]["params"]] == [id(p) for p in m.model.parameters()]
    assert [id(p) for p in a_opt.param_groups[0]["params"]] == [id(p) for p in m.arch_parameters()]
    assert sched["interval"] == "epoch" and sched["scheduler"].optimizer is w_opt
    # BayesNAS: switches on SGD, no schedule; OneShot: weights only.
    bayes = BayesNAS(**TINY)
    b_w, b_a = bayes.configure_optimizers()
    assert isinstance(b_a, torch.optim.SGD) and b_a.param_groups[0]["params"] == bayes.arch_parameters()
    one_shot = OneShot(**TINY, num_samples=2, epochs=1)
    (o_w,), _ = one_shot.configure_optimizers()
    assert one_shot.arch_parameters() == [] and o_w.param_groups[0]["params"] == one_shot.weight_parameters()


def test_architecture_parameters_are_checkpointed_and_not_weights():
    m = DARTS(**TINY)
    assert {"alpha_normal", "alpha_reduce"} <= set(m.state_dict())
    weights = {id(p) for p in m.weight_parameters()}
    assert not weights & {id(p) for p in m.arch_parameters()}


def test_search_step_is_abstract_in_the_base():
    with pytest.raises(NotImplementedError, match="must define search_step"):
        SupernetSearch(**TINY).search_step(paired_batch()["train"], [])


def test_divergence_is_reported_with_epoch_and_batch():
    m = DARTS(**TINY, order=1)
    with pytest.raises(FloatingPointError, match=r"DARTS search diverged: the training loss is nan at epoch 0, batch 7 "
                                                  r"while the inputs and architecture parameters are finite"):
        m.check_finite(torch.tensor(float("nan")), "training loss", 7, torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"w_lr": 0.0}, ValueError, r"^w_lr must be > 0, got 0.0$"),
    ({"alpha_lr": "fast"}, ArgumentTypeError, r"^alpha_lr must be > 0, got 'fast'$"),
    ({"w_momentum": 1.0}, ValueError, r"^w_momentum must be a number in \[0, 1\), got 1.0$"),
    ({"grad_clip": -1}, ValueError, r"^grad_clip must be a number >= 0, got -1$"),
    ({"alpha_grad_clip": -1}, ValueError, r"^alpha_grad_clip must be a number >= 0 \(0 disables clipping\), got -1$"),
    ({"alpha_betas": (0.5,)}, ValueError, r"alpha_betas must be a pair of numbers in \[0, 1\)"),
    ({"alpha_betas": (0.5, 1.0)}, ValueError, r"^alpha_betas\[1\] must be a number in \[0, 1\), got 1.0$"),
    ({"epochs": 0}, ValueError, r"^epochs must be an int >= 1 or None \(None: trainer.max_epochs\), got 0$"),
    ({"w_lr_min": -0.1}, ValueError, r"^w_lr_min must be a number >= 0 or None"),
    ({"memory_format": "nhwc"}, ValueError, r"^memory_format must be one of \['auto', 'contiguous_format', 'channels_last'\], got 'nhwc'"),
])
def test_bad_shared_arguments_are_refused_with_the_checks_messages(kwargs, error, match):
    for cls in (DARTS, SNAS, OneShot):
        with pytest.raises(error, match=match):
            cls(**{**TINY, **kwargs})


@pytest.mark.parametrize("cls, kwargs, match", [
    (OneShot, {"alpha_lr": 0.1}, r"^OneShot has no architecture parameters: alpha_lr is not used, got 0.1$"),
    (OneShot, {"alpha_betas": (0.9, 0.999)}, r"^OneShot has no architecture parameters: alpha_betas is not used"),
    (OneShot, {"alpha_weight_decay": 0.0}, r"alpha_weight_decay is not used, got 0.0$"),
    (OneShot, {"alpha_init_std": 0.1}, r"alpha_init_std is not used"),
    (OneShot, {"alpha_grad_clip": 1.0}, r"alpha_grad_clip is not used"),
    (BayesNAS, {"alpha_betas": (0.9, 0.999)}, r"^BayesNAS steps its switches with SGD, not Adam: alpha_betas is not used"),
    (BayesNAS, {"epochs": 5}, r"^BayesNAS has no cosine schedule with w_lr_min=None: epochs is not used, got 5$"),
    (DARTS, {"w_lr_min": None, "epochs": 5}, r"epochs is not used, got 5$"),
])
def test_a_setting_the_method_does_not_use_is_refused(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**{**TINY, **kwargs})


def test_unused_settings_at_their_defaults_are_accepted_and_reload(tmp_path):
    """What load_from_checkpoint and LightningCLI pass back: every shared setting at its default (a
    pair read back as a list)."""
    OneShot(**TINY, alpha_lr=3e-4, alpha_betas=[0.5, 0.999], alpha_grad_clip=0, epochs=2, w_lr_min=None)
    BayesNAS(**TINY, alpha_betas=[0.5, 0.999], w_lr_min=0.0, epochs=3)
    for cls in (OneShot, BayesNAS):
        m = cls(**TINY)
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, max_epochs=1)
        trainer.strategy.connect(m)
        trainer.save_checkpoint(tmp_path / f"{cls.__name__}.ckpt")
        loaded = cls.load_from_checkpoint(tmp_path / f"{cls.__name__}.ckpt")
        assert dict(loaded.hparams) == dict(m.hparams)


def test_pdarts_layers_come_from_the_stage_schedule():
    kw = dict({k: v for k, v in TINY.items() if k != "layers"}, stage_layers=(3, 4), stage_num_ops=(8, 3),
              stage_skip_dropout=(0.0, 0.3))
    m = PDARTS(**kw, layers=3)
    assert len(m.model.cells) == 3 and m.hparams.layers == 3
    with pytest.raises(ValueError, match=r"layers=4 differs from stage_layers\[0\]=3"):
        PDARTS(**kw, layers=4)
    assert PDARTS(**kw).hparams.layers is None


@pytest.mark.parametrize("order", [1, 2])
def test_checkpointed_cells_leave_the_darts_step_unchanged(order):
    """Every pass recomputes its cells, the virtual ones with their functional weights: without
    binding the recomputation to them, the second-order step's gradient would be wrong."""
    def one_step(checkpoint_cells):
        torch.manual_seed(0)
        m = DARTS(**TINY, order=order, epochs=1, checkpoint_cells=checkpoint_cells).double()
        batch = {k: (x.double(), y) for k, (x, y) in paired_batch().items()}
        optimizers = m.configure_optimizers()[0]
        optimizers[0].param_groups[0]["lr"] = 0.1  # xi of the second-order step
        torch.manual_seed(1)
        m.search_step(batch, optimizers)
        return m.state_dict()

    plain, recomputed = one_step(False), one_step(True)
    for key in plain:
        torch.testing.assert_close(recomputed[key], plain[key], rtol=1e-10, atol=1e-12, msg=key)


def test_channels_last_float32_architecture_gradient_is_as_accurate_as_contiguous():
    """Against float64: torch's channels_last CPU batch-norm statistics alone gave 1e-3 here (5e-7
    contiguous); the supernet's batch norm keeps the contiguous accuracy (spaces/batch_norm.py)."""
    def gradient(dtype, memory_format):
        torch.manual_seed(0)
        m = DARTS(C=8, layers=5, order=1, in_channels=3, memory_format=memory_format, checkpoint_cells=False).to(dtype)
        g = torch.Generator().manual_seed(1)
        half = lambda: (torch.randn(32, 3, 16, 16, generator=g).to(dtype), torch.randint(0, 10, (32,), generator=g))  # noqa: E731
        return torch.cat([t.reshape(-1) for t in m.architecture_gradient(half(), half(), 0.0)[0]]).double()

    reference = gradient(torch.float64, "contiguous_format")
    for memory_format in ("contiguous_format", "channels_last"):
        g = gradient(torch.float32, memory_format)
        assert ((g - reference).norm() / reference.norm()).item() < 1e-5, memory_format
