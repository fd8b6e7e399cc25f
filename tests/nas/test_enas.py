"""ENAS (Pham et al., ICML 2018) on the micro and macro CNN spaces, on digits-sized data: the alternation of
omega steps and controller updates, the reward, keyed draws, deriving, the space defaults, the files written
at fit end, the skip penalty by hand, DDP, resume and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.nn.parallel import DistributedDataParallel

from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
from lit_automl.nas.enas import ENAS, skip_penalty
from lit_automl.nas.controller import Controller
from lit_automl.spaces import ChainSpace, ENASMacroArchitecture, ENASMacroSpace, ENASMicroSpace, Genotype
from tests.ddp_harness import fit_ddp
from tests.resume_harness import assert_same_state, run_resumed

pytestmark = pytest.mark.usefixtures("single_thread")


def micro(**kwargs) -> ENASMicroSpace:
    return ENASMicroSpace(**{"num_nodes": 2, "num_layers": 1, "C": 8, **kwargs})


def macro(**kwargs) -> ENASMacroSpace:
    return ENASMacroSpace(**{"num_layers": 4, "out_filters": 8, **kwargs})


TINY = dict(in_channels=1, controller_hidden=16, derive_samples=3)


def enas(space, **kwargs) -> ENAS:
    return ENAS(space, **{**TINY, **kwargs})


def digits(batch_size: int = 16) -> BilevelDataModule:
    return BilevelDataModule(DigitsDataModule(batch_size=batch_size))


def fit(module, tmp_path, callbacks=(), batches: int = 3, epochs: int = 1, **kwargs) -> pl.Trainer:
    options = dict(accelerator="cpu", devices=1, max_epochs=epochs, limit_train_batches=batches, limit_val_batches=0,
                   logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer = pl.Trainer(callbacks=list(callbacks), **{**options, **kwargs})
    trainer.fit(module, datamodule=digits())
    return trainer


def flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in params])


def val_batch(n: int = 128):
    data = DigitsDataModule()
    data.setup("fit")
    x, y = data.val_dataset.tensors
    return x[:n], y[:n]


# --------------------------------------------------------------------------- the skip penalty


@pytest.fixture
def float64():
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def test_skip_penalty_is_the_mean_bernoulli_kl_over_the_layers_with_skip_bits(float64):
    torch.manual_seed(0)
    ctrl = Controller(ENASMacroSpace(num_layers=3).decisions(), hidden_size=6, init_range=0.8, tanh_constant=1.5)
    actions, _, _ = ctrl.sample(4, generator=torch.Generator().manual_seed(0))
    target = 0.4
    got = skip_penalty(ctrl, actions, target)
    value = float(got.detach())
    assert got.dtype == torch.float64
    logits = [lg.detach() for lg in ctrl.step_logits(actions)]
    assert [lg.shape[1] for lg in logits[1::2]] == [0, 1, 2]  # layer 0's anchor has no bits
    per_sample = []
    for b in range(4):
        layers = []
        for lg in logits[3::2]:  # layers 1 and 2: the only anchors with bits
            kl = 0.0
            for q in lg[b].tolist():
                p = 1.0 / (1.0 + math.exp(-q))
                kl += p * math.log(p / target) + (1 - p) * math.log((1 - p) / (1 - target))
            layers.append(kl)
        per_sample.append(sum(layers) / len(layers))  # averaged over 2 layers, not 3
    assert value == pytest.approx(sum(per_sample) / 4, rel=1e-12, abs=1e-14)
    got.backward()
    assert ctrl.v.weight.grad is not None and float(ctrl.v.weight.grad.abs().sum()) > 0
    # no layer with bits: no penalty
    one = Controller(ENASMacroSpace(num_layers=1).decisions(), hidden_size=4)
    assert float(skip_penalty(one, one.sample(2)[0], target)) == 0.0


# --------------------------------------------------------------------------- the alternation


class RecordSteps(pl.Callback):
    """After every training step: the controller's Adam step count, the pending samples, omega and theta."""

    def __init__(self):
        self.adam_steps, self.pending, self.omega, self.theta = [], [], [], []

    def on_train_start(self, trainer, pl_module):
        self.omega.append(flat(pl_module.model.parameters()))
        self.theta.append(flat(pl_module.controller.parameters()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        state = trainer.optimizers[1].state
        first = next(pl_module.controller.parameters())
        self.adam_steps.append(int(state[first]["step"]) if first in state else 0)
        self.pending.append(len(pl_module.pending))
        self.omega.append(flat(pl_module.model.parameters()))
        self.theta.append(flat(pl_module.controller.parameters()))


@pytest.mark.parametrize("space", [micro, macro])
def test_omega_steps_every_batch_and_the_controller_every_num_aggregate_samples(space, tmp_path):
    torch.manual_seed(0)
    m = enas(space(), num_aggregate=3, controller_lr=0.05)
    rec = RecordSteps()
    fit(m, tmp_path, [rec], batches=7)
    assert rec.adam_steps == [0, 0, 1, 1, 1, 2, 2]
    assert rec.pending == [1, 2, 0, 1, 2, 0, 1]
    assert m.search_steps == 7
    for i in range(7):
        assert not torch.equal(rec.omega[i], rec.omega[i + 1]), f"omega must change at step {i}"
        assert torch.equal(rec.theta[i], rec.theta[i + 1]) == (i not in (2, 5)), f"theta at step {i}"


class RecordRewards(pl.Callback):
    """Each step's newest pending reward next to its recomputation: the score and the sample entropy."""

    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        tokens, reward = pl_module.pending[-1]
        acc = float(pl_module.score(tokens, tuple(batch["val"])))
        with torch.no_grad():
            _, entropy = pl_module.controller.log_prob([tokens])
        self.rows.append((reward, acc, float(entropy[0])))


@pytest.mark.parametrize("space", [micro, macro])
def test_the_reward_is_the_validation_accuracy_plus_entropy_weight_times_the_sample_entropy(space, tmp_path):
    torch.manual_seed(0)
    m = enas(space(), num_aggregate=100, entropy_weight=0.5, keep_prob=1.0)  # no dropout: the score is exact
    rec = RecordRewards()
    fit(m, tmp_path, [rec], batches=3)
    assert len(rec.rows) == 3
    for reward, acc, entropy in rec.rows:
        assert entropy > 0.1
        assert reward == pytest.approx(acc + 0.5 * entropy, rel=1e-5)


def test_score_is_the_childs_accuracy_with_batch_statistics_and_leaves_the_model_untouched():
    torch.manual_seed(0)
    m = enas(macro())
    x, y = val_batch(64)
    tokens = m.sample_children(1, 0, 1)[0][0]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.eval()
    got = float(m.score(tokens, (x, y)))
    assert not m.model.training, "score must leave the module's mode as it found it"
    for k, v in before.items():
        assert torch.equal(m.state_dict()[k], v), f"{k} changed while scoring"
    m.model.train()
    with torch.no_grad():
        expected = float((m.model(x, m.space.decode(tokens)).argmax(-1) == y).float().mean())
    assert got == pytest.approx(expected)
    m.model.eval()
    assert float((m.model(x, m.space.decode(tokens)).argmax(-1) == y).float().mean()) != got, \
        "running statistics would give another accuracy: the check must tell them apart"


@pytest.mark.parametrize("space", [micro, macro])
def test_a_controller_update_is_reinforce_on_the_pending_samples_plus_the_weighted_skip_penalty(space):
    torch.manual_seed(0)
    m = enas(space(), num_aggregate=3, skip_target=0.3, **({"skip_weight": 0.7} if space is macro else {}))
    actions = m.sample_children(3, 0, 1)[0]
    m.pending = [(a, r) for a, r in zip(actions, [0.2, 0.5, 0.9])]
    captured = {}
    step = m.policy.step

    def spy(controller, optimizer, acts, rewards, penalty=None):
        captured.update(acts=acts, rewards=rewards, penalty=penalty)
        return step(controller, optimizer, acts, rewards, penalty=penalty)

    m.policy.step = spy
    metrics = m.controller_update(m.controller_optimizer())
    assert captured["acts"] == actions and captured["rewards"] == [0.2, 0.5, 0.9] and m.pending == []
    assert m.policy.baseline.value == pytest.approx(0.5 + 0.1 / 3)  # the first update: the mean reward
    if space is micro:
        assert captured["penalty"] is None and "controller/skip_rate" not in metrics
        return
    expected = 0.7 * skip_penalty(m.controller, actions, 0.3)
    torch.testing.assert_close(captured["penalty"](m.controller, actions), expected)
    bits = [bit for a in actions for skip in a[1::2] for bit in skip]
    assert float(metrics["controller/skip_rate"]) == pytest.approx(sum(bits) / len(bits))


# --------------------------------------------------------------------------- keyed draws


class RecordChildren(pl.Callback):
    """The architecture of every supernet forward (omega's child, then the controller's, per step)."""

    def __init__(self):
        self.children = []

    def on_train_start(self, trainer, pl_module):
        self.hook = pl_module.model.register_forward_pre_hook(lambda mod, args: self.children.append(args[1]))

    def on_train_end(self, trainer, pl_module):
        self.hook.remove()


def _children(tmp_path, seed: int, disturb: int, space=micro):
    torch.manual_seed(0)  # the same initial weights and controller
    m = enas(space(), num_aggregate=100, seed=seed)
    torch.manual_seed(disturb)  # the global stream (dropout) must not matter to the draws
    rec = RecordChildren()
    fit(m, tmp_path / f"{seed}_{disturb}", [rec], batches=4)
    return m, rec.children


def test_controller_draws_are_keyed_by_the_seed_and_the_step(tmp_path):
    m, children = _children(tmp_path, seed=0, disturb=0)
    _, again = _children(tmp_path, seed=0, disturb=7)
    _, other = _children(tmp_path, seed=1, disturb=0)
    assert len(children) == 4 * 2 + 3  # per step omega's child and the controller's; 3 derived at epoch end
    assert children == again
    assert children[:8] != other[:8]
    # omega's child of step s is the (seed, s, 0) draw, the controller's the (seed, s, 1) draw (no update happened)
    for step in range(4):
        assert children[2 * step] == m.space.decode(m.sample_children(1, step, 0)[0][0])
        assert children[2 * step + 1] == m.space.decode(m.sample_children(1, step, 1)[0][0])
    assert children[2] != children[4], "a fresh child every step"
    derived = m.sample_children(3, 0, 2)[0]
    assert children[8:] == [m.space.decode(t) for t in derived]


# --------------------------------------------------------------------------- deriving


def test_derive_returns_the_best_scoring_of_its_samples():
    torch.manual_seed(0)
    m = enas(macro(), derive_samples=8)
    batch = val_batch(128)
    tokens, score = m.derive(batch, key=5)
    samples = m.sample_children(8, 5, 2)[0]
    scores = [float(m.score(a, batch)) for a in samples]
    assert len(set(scores)) > 1, "the samples must score differently for the check to mean something"
    best = max(range(8), key=scores.__getitem__)
    assert tokens == samples[best] and score == scores[best] == max(scores)
    three = m.sample_children(3, 6, 2)[0]
    scores3 = [float(m.score(a, batch)) for a in three]
    assert m.derive(batch, num_samples=3, key=6) == (three[max(range(3), key=scores3.__getitem__)], max(scores3))
    with pytest.raises(ValueError, match="num_samples.*0"):
        m.derive(batch, num_samples=0)


class LastVal(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.val = tuple(t.clone() for t in batch["val"])


def test_each_epoch_derives_on_its_last_validation_batch(tmp_path):
    torch.manual_seed(0)
    m = enas(macro(), num_aggregate=2, controller_lr=0.05, derive_samples=4)
    assert m.best_tokens is None and m.best_score is None
    before = m.best_architecture_tokens()
    assert before == m.sample_children(1, 0, 3)[0][0]  # a fixed draw before any derivation
    last = LastVal()
    fit(m, tmp_path, [last], batches=3, epochs=2)
    assert (m.best_tokens, m.best_score) == m.derive(last.val, key=1)
    assert m.best_architecture == m.space.decode(m.best_tokens)


def test_derivation_scores_on_the_latest_full_size_validation_batch_not_a_remainder(tmp_path):
    m = enas(macro())
    full, remainder = val_batch(16), val_batch(5)
    m.remember_val(full, 16)
    m.remember_val(remainder, 5)
    assert m._last_val is full, "a smaller remainder batch does not replace a full one"
    newer = val_batch(16)
    m.remember_val(newer, 16)
    assert m._last_val is newer
    # in a fit whose epoch ends with a remainder (digits: 719 examples per half, batch 64 -> 11 x 64 + 15),
    # the derivation's score is a count over 64 images
    scored = []
    original = m.score

    def recording(tokens, batch):
        scored.append(len(batch[1]))
        return original(tokens, batch)

    m.score = recording
    data = digits(64)
    pl.Trainer(accelerator="cpu", max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path).fit(m, datamodule=data)
    assert len(data.arch_indices) % 64 != 0, "the epoch ends with a remainder batch"
    assert scored[-m.hparams.derive_samples:] == [64] * m.hparams.derive_samples


# --------------------------------------------------------------------------- defaults


def _decision_kinds(m):
    return [d.name.rsplit(".", 1)[-1] for d in m.controller.decisions]


def test_space_defaults_fill_the_settings_left_none():
    mac = ENAS(macro())
    assert mac.settings["skip_weight"] == 0.8 and mac.settings["num_aggregate"] == 20
    assert mac.settings["entropy_weight"] == 1e-4 and mac.controller.temperature is None
    skips = [c for c, k in zip(mac.controller.tanh_constants, _decision_kinds(mac)) if k == "skip"]
    assert skips == [1.5] * 4  # the op logits' constant: test_macro_defaults_shape_every_decision_...
    mic = ENAS(micro())
    assert mic.settings["skip_weight"] == 0.0 and mic.settings["num_aggregate"] == 10
    assert mic.settings["entropy_weight"] == 1e-4
    kinds = _decision_kinds(mic)
    assert set(kinds) == {"input_x", "op_x", "input_y", "op_y"}
    assert mic.controller.tanh_constants == [pytest.approx(1.1 / 2.5) if k.startswith("op") else 1.1 for k in kinds]
    (w_mac, c_mac), _ = mac.configure_optimizers()
    (w_mic, _), (sched,) = mic.configure_optimizers()
    assert w_mac.param_groups[0]["weight_decay"] == 2.5e-4 and w_mic.param_groups[0]["weight_decay"] == 1e-4
    # the paper's and the authors' settings (module docstring)
    g = w_mic.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"]) == (0.05, 0.9, True)
    s = sched["scheduler"]
    assert (s.T_0, s.T_mult, s.eta_min) == (10, 2, 0.0005)
    c = c_mac.param_groups[0]
    assert (c["lr"], c["betas"], c["eps"]) == (3.5e-4, (0.0, 0.999), 1e-3)
    assert mic.controller.hidden_size == 100 and mic.controller.num_layers == 1
    assert mic.policy.baseline.decay == 0.99
    assert mic.model.dropout.p == pytest.approx(0.1)
    assert max(float(p.detach().abs().max()) for p in mic.controller.parameters()) <= 0.1


def test_macro_defaults_shape_every_decision_with_the_authors_single_tanh_constant():
    mac = ENAS(macro())
    assert mac.controller.tanh_constants == [1.5] * len(mac.controller.decisions)


def test_given_settings_override_the_space_defaults():
    m = ENAS(micro(), tanh_constant=2.0, op_tanh_reduce=4.0, temperature=5.0, num_aggregate=3, entropy_weight=0.1,
             w_weight_decay=0.0)
    assert m.controller.tanh_constants == [0.5 if k.startswith("op") else 2.0 for k in _decision_kinds(m)]
    assert m.controller.temperature == 5.0 and m.settings["num_aggregate"] == 3
    assert m.configure_optimizers()[0][0].param_groups[0]["weight_decay"] == 0.0
    off = ENAS(macro(), tanh_constant=0, skip_weight=0)
    assert off.controller.tanh_constants == [None] * len(off.controller.decisions)
    assert off.settings["skip_weight"] == 0


# --------------------------------------------------------------------------- files


def test_micro_search_writes_the_derived_architecture_and_genotype_files(tmp_path):
    torch.manual_seed(0)
    m = enas(micro(), num_aggregate=2)
    trainer = fit(m, tmp_path, batches=2, logger=CSVLogger(tmp_path, name="enas", version="micro"))
    folder = tmp_path / "enas" / "micro"
    assert Path(trainer.log_dir) == folder
    genotype = m.genotype()
    assert m.best_tokens is not None and genotype == m.space.decode(m.best_tokens)
    assert Genotype.from_dict(json.loads((folder / "architecture.json").read_text())) == genotype
    assert Genotype.load(folder / "genotype.txt") == genotype == Genotype.load(folder / "genotype.json")
    assert (folder / "genotype.png").read_bytes()[:4] == b"\x89PNG"


def test_macro_search_writes_its_architecture_json(tmp_path):
    torch.manual_seed(0)
    m = enas(macro(), num_aggregate=2)
    fit(m, tmp_path, batches=2, logger=CSVLogger(tmp_path, name="enas", version="macro"))
    folder = tmp_path / "enas" / "macro"
    arch = ENASMacroArchitecture.from_json((folder / "architecture.json").read_text())
    assert arch == m.best_architecture == m.space.decode(m.best_tokens)
    assert not (folder / "genotype.txt").exists()
    with pytest.raises(TypeError, match="micro"):
        m.genotype()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("space,kwargs,match", [
    (lambda: "micro", {}, r"space must be one of \['ENASMicroSpace', 'ENASMacroSpace'\].*got str: 'micro'"),
    (lambda: ChainSpace(), {}, r"space must be one of .*got ChainSpace"),
    (micro, {"skip_weight": 0.5}, r"skip_weight.*0\.5"),
    (micro, {"num_aggregate": 0}, r"num_aggregate must be an int >= 1, got 0"),
    (macro, {"w_lr": -0.1}, r"w_lr must be a number > 0, got -0\.1"),
    (macro, {"controller_lr": -1e-3}, r"controller_lr must be a number > 0, got -0\.001"),
    (macro, {"w_lr_min": 0.1}, r"w_lr_min.*0\.1"),
    (macro, {"controller_betas": (0.9,)}, r"controller_betas.*\(0\.9,\)"),
    (macro, {"keep_prob": 0.0}, r"keep_prob.*0\.0"),
    (macro, {"temperature": -1.0}, r"temperature.*-1\.0"),
    (macro, {"op_tanh_reduce": 0}, r"op_tanh_reduce.*0"),
    (macro, {"skip_target": 1.0}, r"skip_target.*1\.0"),
    (macro, {"derive_samples": 0}, r"derive_samples.*0"),
])
def test_bad_arguments_are_refused_naming_the_value(space, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ENAS(space(), **kwargs)


def test_unpaired_batches_are_refused_naming_the_wrapper():
    m = enas(macro())
    x, y = val_batch(4)
    with pytest.raises(TypeError, match=r"paired batches.*BilevelDataModule.*got tuple"):
        m.training_step((x, y), 0)
    with pytest.raises(TypeError, match=r"paired batches.*got \['train'\]"):
        m.training_step({"train": (x, y)}, 0)


def test_ddp_without_find_unused_parameters_is_refused(tmp_path):
    m = enas(macro())
    t = pl.Trainer(accelerator="cpu", devices=1, logger=False)
    m.trainer = t
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:  # a one-process DDP wrapper without find_unused_parameters, as the strategy would hold it
        t.strategy.model = DistributedDataParallel(m)
        with pytest.raises(ValueError, match="find_unused_parameters=True"):
            m.on_fit_start()
        t.strategy.model = DistributedDataParallel(m, find_unused_parameters=True)
        m.on_fit_start()  # accepted
    finally:
        torch.distributed.destroy_process_group()


# --------------------------------------------------------------------------- resume


class RecordPolicy(pl.Callback):
    def __init__(self):
        self.children = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.children.append(pl_module.pending[-1][0] if pl_module.pending else None)


@pytest.mark.parametrize("space", [micro, macro])
def test_a_resumed_search_ends_as_the_uninterrupted_one(space, tmp_path):
    # 3 steps per epoch and num_aggregate 2: the checkpoint after epoch 0 holds one pending sample.
    records = []

    def record():
        records.append(RecordPolicy())
        return [records[-1]]

    runs = run_resumed(lambda: enas(space(), num_aggregate=2, controller_lr=0.05), digits, tmp_path,
                       {"max_epochs": 1}, callbacks=record, max_epochs=2, limit_train_batches=3,
                       limit_val_batches=0)
    full, resumed = runs.full, runs.resumed
    ckpt = torch.load(runs.checkpoint, weights_only=False)
    assert len(ckpt["enas"]["pending"]) == 1 and ckpt["enas"]["search_steps"] == 3
    assert ckpt["enas"]["best_tokens"] is not None
    assert full.search_steps == resumed.search_steps == 6
    assert_same_state(full, resumed)  # omega, the controller, batch-norm statistics
    assert resumed.pending == full.pending and len(full.pending) == 0
    assert resumed.policy.baseline.value == full.policy.baseline.value is not None
    assert resumed.best_tokens == full.best_tokens and resumed.best_score == full.best_score
    assert records[2].children == records[0].children[3:]
    for a, b in zip(runs.full_trainer.optimizers, runs.resumed_trainer.optimizers):
        for pa, pb in zip(a.state.values(), b.state.values()):
            for key in pa:
                torch.testing.assert_close(pa[key], pb[key], rtol=0, atol=0)


# --------------------------------------------------------------------------- DDP


class RecordRankSearch(pl.Callback):
    """Per rank: every supernet forward's architecture (as JSON), the pending samples after each step, and the
    policy state at the end, saved to a file."""

    def __init__(self, dirpath: str):
        self.dirpath, self.children, self.pending = dirpath, [], []

    def on_train_start(self, trainer, pl_module):
        def hook(mod, args):
            self.children.append(pl_module.space.to_json(args[1]))
        self.hook = pl_module.model.register_forward_pre_hook(hook)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.pending.append([list(p) for p in pl_module.pending])

    def on_train_end(self, trainer, pl_module):
        self.hook.remove()
        torch.save({"children": self.children, "pending": self.pending, "best": (pl_module.best_tokens,
                    pl_module.best_score), "baseline": pl_module.policy.baseline.value,
                    "steps": pl_module.search_steps}, Path(self.dirpath) / f"search{trainer.global_rank}.pt")


@pytest.mark.ddp
def test_ddp_ranks_sample_the_same_children_and_keep_identical_omega_and_controller(tmp_path):
    pl.seed_everything(0)
    m = enas(macro(), num_aggregate=2, controller_lr=0.05)
    before = flat(m.controller.parameters())
    ranks = fit_ddp(m, digits(batch_size=8), tmp_path, find_unused_parameters=True,
                    callbacks=[RecordRankSearch(str(tmp_path))], limit_train_batches=5, default_root_dir=tmp_path)
    assert ranks[0]["fingerprints"] != ranks[1]["fingerprints"], "ranks must see different data"
    s0, s1 = ranks[0]["state_dict"], ranks[1]["state_dict"]
    for key, value in s0.items():
        if "running_" in key or "num_batches_tracked" in key:
            continue  # per-rank batch-norm averages
        torch.testing.assert_close(value, s1[key], rtol=0, atol=1e-6, msg=key)
    after = torch.cat([s0[k].reshape(-1) for k in s0 if k.startswith("controller.")])
    assert not torch.allclose(after, before), "the controller must have been updated (twice)"
    r0, r1 = (torch.load(tmp_path / f"search{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 5
    assert len(r0["children"]) == 5 * 2 + 3 and r0["children"] == r1["children"]
    assert [len(p) for p in r0["pending"]] == [1, 0, 1, 0, 1]
    assert r0["pending"] == r1["pending"], "the same controller samples and the same (all-reduced) rewards"
    assert r0["best"] == r1["best"] and r0["best"][0] is not None
    assert r0["baseline"] == r1["baseline"] is not None
    assert (tmp_path / "architecture.json").exists()


# --------------------------------------------------------------------------- known bugs in enas.py / enas_policy.py


class Derivations(pl.Callback):
    """The derivation each epoch ended with: read at the next epoch's start, and at fit end."""

    def __init__(self):
        self.tokens = []

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch > 0:
            self.tokens.append(pl_module.best_tokens)

    def on_train_end(self, trainer, pl_module):
        self.tokens.append(pl_module.best_tokens)


def test_genotype_logger_records_each_epochs_own_derivation(tmp_path):
    from lit_automl.callbacks import GenotypeLogger

    torch.manual_seed(0)
    m = enas(micro(), num_aggregate=2, controller_lr=0.05)
    rec = Derivations()
    logger = GenotypeLogger(dirpath=tmp_path / "g", plot=False, verbose=False)
    fit(m, tmp_path, [logger, rec], batches=2, epochs=2)
    assert len(rec.tokens) == 2 and rec.tokens[0] != rec.tokens[1], "the two epochs must derive different cells"
    lines = (tmp_path / "g" / "genotypes.txt").read_text().splitlines()
    assert lines == [GenotypeLogger.format_line(e, m.space.decode(t)) for e, t in enumerate(rec.tokens)]


def test_a_negative_seed_is_refused_up_front():
    with pytest.raises(ValueError, match=r"seed must be an int >= 0, got -1"):
        ENAS(micro(), seed=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_search_runs_on_a_gpu_as_on_the_cpu(tmp_path):
    # The keyed generators are CPU generators; the controller lives on the module's device.
    children = {}
    for accelerator in ("cpu", "gpu"):
        torch.manual_seed(0)
        m = enas(macro(), num_aggregate=2, controller_lr=0.05)
        rec = RecordChildren()
        fit(m, tmp_path / accelerator, [rec], batches=3, accelerator=accelerator)
        assert m.search_steps == 3 and m.best_tokens is not None
        children[accelerator] = rec.children
    assert len(children["gpu"]) == len(children["cpu"]) == 3 * 2 + 3


def test_diverged_shared_weights_stop_with_the_loss_and_the_settings_to_lower(tmp_path):
    m = enas(macro(), w_lr=1e9, grad_clip=0)
    with pytest.raises(FloatingPointError, match=r"ENAS: the shared weights diverged at epoch \d+, batch \d+: "
                                                 r"training loss (nan|inf); lower w_lr=1000000000.0 or grad_clip=0"):
        fit(m, tmp_path, batches=20, epochs=3)
