"""Learning to learn by gradient descent by gradient descent (Andrychowicz et al. 2016): the preprocessing,
the meta-gradient against an independent unroll, meta-training, resume, DDP, LSTMOptimizer, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lit_automl.meta import CoordinateLSTM, L2LMetaTrainer, LSTMOptimizer
from lit_automl.meta.l2l import InnerLSTM, preprocess_gradients
from tests.resume_harness import assert_same_state, run_resumed

TINY = dict(task="quadratic", unroll=20, truncation=5, functions=16, dim=3, hidden=8, episodes_per_epoch=20,
            meta_lr=0.01)
QUIET = dict(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)


def paper_preprocessing(g: float, p: float = 10.0):
    """Appendix A, written out per scalar."""
    if abs(g) >= math.exp(-p):
        return math.log(abs(g)) / p, math.copysign(1.0, g)
    return -1.0, math.exp(p) * g


@pytest.mark.parametrize("p", [10.0, 3.0])
def test_preprocessing_is_the_papers_formula_above_and_below_e_minus_p(p):
    values = [2.5, -0.3, math.exp(-p) * 1.01, -math.exp(-p) * 0.99, 1e-9, -3e-7, 0.0]
    got = preprocess_gradients(torch.tensor(values, dtype=torch.float64), p=p)
    want = torch.tensor([paper_preprocessing(v, p) for v in values], dtype=torch.float64)
    torch.testing.assert_close(got, want)
    assert got[2, 1] == 1.0 and got[3, 0] == -1.0  # each side of the threshold takes its branch


def test_authors_code_preprocessing_clamps():
    g = torch.tensor([0.5, -1e-4, 1e-12], dtype=torch.float64)
    got = preprocess_gradients(g, p=5.0, kind="code")
    eps = torch.finfo(torch.float64).eps
    want = [[math.log(0.5 + eps) / 5, 1.0], [-1.0, -1e-4 * math.exp(5)], [-1.0, 1e-12 * math.exp(5)]]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    torch.testing.assert_close(preprocess_gradients(g, kind="none"), g.unsqueeze(-1))


def lstm_by_hand(net: CoordinateLSTM, inp: torch.Tensor, hc):
    """The LSTM equations written out (gates i, f, g, o as in torch.nn.LSTMCell's weight layout)."""
    new = []
    for layer, cell in enumerate(net.cells):
        h, c = hc[layer]
        gates = inp @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        new.append((h, c))
        inp = h
    return (inp @ net.output.weight.T + net.output.bias).squeeze(-1) * net.output_scale, new


def test_meta_gradient_through_a_short_unroll_matches_an_independent_computation():
    torch.manual_seed(0)
    trainer = L2LMetaTrainer(unroll=3, truncation=3, functions=2, dim=3, hidden=4).double()
    model, x0, loss_fn, batches = trainer.optimisee(0)
    meta_loss, _, _ = trainer.unroll_truncation(model, x0, None, loss_fn, batches, 3)
    got = torch.autograd.grad(meta_loss, list(trainer.net.parameters()))

    # Independent: closed-form quadratic gradients (constants: no second derivatives), the LSTM by hand.
    (W, y), x = batches[0], x0["x"]
    net = trainer.net
    f = lambda x: ((torch.einsum("bij,bj->bi", W, x) - y) ** 2).sum(-1).mean()  # noqa: E731
    n = x.numel()
    hc = [(torch.zeros(n, 4, dtype=torch.float64), torch.zeros(n, 4, dtype=torch.float64))] * 2
    total = f(x)
    for _ in range(3):
        g = (2 / W.shape[0]) * torch.einsum("bji,bj->bi", W, torch.einsum("bij,bj->bi", W, x) - y)
        inp = torch.tensor([paper_preprocessing(v) for v in g.detach().reshape(-1).tolist()], dtype=torch.float64)
        update, hc = lstm_by_hand(net, inp, hc)
        x = x + update.view_as(x)
        total = total + f(x)
    want = torch.autograd.grad(total, list(net.parameters()))
    torch.testing.assert_close(meta_loss, total)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    # Keeping the second derivatives changes the meta-gradient (so dropping them is what happened above).
    trainer.hparams.second_order = True
    second = trainer.unroll_truncation(model, x0, None, loss_fn, batches, 3)[0]
    full = torch.autograd.grad(second, list(net.parameters()))
    assert not all(torch.allclose(a, b) for a, b in zip(full, want))


def test_meta_training_lowers_the_quadratics_final_loss():
    pl.seed_everything(0)
    module = L2LMetaTrainer(**TINY)
    held_out = range(10_000, 10_005)  # episodes training never draws

    def final_loss():
        return sum(module.evaluate(e)[-1] for e in held_out) / len(held_out)

    start = sum(module.evaluate(e)[0] for e in held_out) / len(held_out)
    untrained = final_loss()
    pl.Trainer(max_epochs=1, **QUIET).fit(module)
    trained = final_loss()
    assert trained < 0.5 * start and trained < 0.1 * untrained, (start, untrained, trained)


def test_mlp_on_digits_meta_trains():
    pl.seed_everything(0)
    module = L2LMetaTrainer(task="mlp", unroll=4, truncation=2, mlp_hidden=5, mlp_batch=16, hidden=4,
                            preprocess="code", p=5.0, output_scale=0.01, episodes_per_epoch=2)
    before = [p.detach().clone() for p in module.net.parameters()]
    pl.Trainer(max_epochs=1, **QUIET).fit(module)
    assert all(not torch.equal(a, b) for a, b in zip(before, module.net.parameters()))
    losses = module.evaluate(5, steps=3)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("kwargs, hidden_shapes, act", [
    (dict(), [(20, 64)], nn.Sigmoid), (dict(mlp_hidden=40), [(40, 64)], nn.Sigmoid),
    (dict(mlp_layers=2), [(20, 64), (20, 20)], nn.Sigmoid), (dict(mlp_activation="relu"), [(20, 64)], nn.ReLU),
])
def test_mlp_optimisees_of_the_papers_generalisation_checks(kwargs, hidden_shapes, act):
    module = L2LMetaTrainer(task="mlp", unroll=2, truncation=1, hidden=4, **kwargs)
    model, params, _, batches = module.optimisee(0)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [*hidden_shapes, (10, hidden_shapes[-1][0])]
    assert sum(isinstance(m, act) for m in model) == len(hidden_shapes)
    assert {n: tuple(p.shape) for n, p in params.items()} == {n: tuple(p.shape) for n, p in model.named_parameters()}
    for name, m in model.named_children():  # nn.Linear's default bound 1/sqrt(fan_in)
        if isinstance(m, nn.Linear):
            assert params[f"{name}.weight"].abs().max() <= 1 / math.sqrt(m.in_features)
    assert len(batches) == 3 and batches[0][0].shape == (128, 1, 8, 8)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    small = {**TINY, "episodes_per_epoch": 2, "unroll": 6, "truncation": 3}
    runs = run_resumed(lambda: L2LMetaTrainer(**small), lambda: None, tmp_path, {"max_epochs": 1}, max_epochs=2)
    assert_same_state(runs.full, runs.resumed)
    assert runs.full.trainer.global_step == 2 * 2 * 2  # episodes x meta-updates per episode


def test_lstm_optimizer_steps_with_the_net_and_its_state_round_trips(tmp_path):
    torch.manual_seed(0)
    net = CoordinateLSTM(hidden=4)
    model = nn.Linear(3, 2)
    x, y = torch.randn(8, 3), torch.randn(8, 2)
    start = [p.detach().clone() for p in model.parameters()]
    opt = LSTMOptimizer(model.parameters(), net=net)

    def step(model, opt):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    step(model, opt)
    # The first step is x + m(grad) from the zero state, the update the inner loop takes.
    model.zero_grad()
    x0 = dict(zip(["weight", "bias"], start))
    probe = nn.Linear(3, 2)
    probe.load_state_dict(x0)
    nn.functional.mse_loss(probe(x), y).backward()
    grads = {n: p.grad for n, p in probe.named_parameters()}
    inner = InnerLSTM(net)
    with torch.no_grad():
        want, _ = inner.step(x0, grads, inner.init_state(x0))
    for (n, p) in model.named_parameters():
        torch.testing.assert_close(p.detach(), want[n])

    step(model, opt)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    clone = nn.Linear(3, 2)
    clone.load_state_dict(ckpt["model"])
    reopened = LSTMOptimizer(clone.parameters(), net=net)
    reopened.load_state_dict(ckpt["opt"])
    for a, b in zip(opt.state.values(), reopened.state.values()):
        torch.testing.assert_close(a["hidden"], b["hidden"], rtol=0, atol=0)
    step(model, opt)
    step(clone, reopened)
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    fresh = nn.Linear(3, 2)
    fresh.load_state_dict(ckpt["model"])
    step(fresh, LSTMOptimizer(fresh.parameters(), net=net))  # without the state: a different step
    assert not torch.allclose(fresh.weight, model.weight)


@pytest.mark.parametrize("kwargs, match", [
    (dict(unroll=0), "unroll"), (dict(unroll=-5), "unroll"), (dict(unroll=10, truncation=20), "truncation"),
    (dict(truncation=0), "truncation"), (dict(unroll=100, truncation=30), "multiple of truncation"),
    (dict(task="mnist"), "task"), (dict(preprocess="log"), "preprocess"), (dict(p=0), "p"),
    (dict(output_scale=0), "output_scale"), (dict(meta_lr=0), "meta_lr"), (dict(functions=0), "functions"),
    (dict(hidden=0), "hidden"), (dict(mlp_activation="tanh"), "mlp_activation"), (dict(mlp_layers=0), "mlp_layers"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L2LMetaTrainer(**kwargs)


def test_lstm_optimizer_refuses_a_non_lstm_net():
    with pytest.raises(TypeError, match="CoordinateLSTM"):
        LSTMOptimizer(nn.Linear(2, 1).parameters(), net=nn.LSTM(2, 2))


class RecordEpisodes(pl.Callback):
    """Writes the episode indices each rank trained on."""

    def __init__(self, dirpath: str):
        self.dirpath, self.seen = dirpath, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(int(batch[0][0]))

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(self.seen, Path(self.dirpath) / f"episodes{trainer.global_rank}.pt")


@pytest.mark.ddp
def test_ddp_ranks_train_on_different_episodes_and_keep_one_lstm(tmp_path):
    from tests.ddp_harness import fit_ddp

    pl.seed_everything(0)
    module = L2LMetaTrainer(**{**TINY, "episodes_per_epoch": 4, "unroll": 4, "truncation": 2})
    before = {k: v.clone() for k, v in module.state_dict().items()}
    ranks = fit_ddp(module, None, tmp_path, callbacks=[RecordEpisodes(str(tmp_path))])
    seen = [torch.load(tmp_path / f"episodes{r}.pt") for r in range(2)]
    assert not set(seen[0]) & set(seen[1]), seen
    s0, s1 = ranks[0]["state_dict"], ranks[1]["state_dict"]
    assert any(not torch.allclose(s0[k], before[k]) for k in s0)
    for k in s0:
        torch.testing.assert_close(s0[k], s1[k], rtol=0, atol=1e-7, msg=k)


def test_evaluate_takes_the_final_loss_on_the_next_steps_batch():
    # f(x_T) is on batch T, as the loss step T of a longer run records (it used to reuse batch T - 1)
    module = L2LMetaTrainer(task="mlp", unroll=6, truncation=3, mlp_hidden=5, mlp_batch=8, hidden=4,
                            preprocess="code", p=5.0, output_scale=0.01)
    short, longer = module.evaluate(3, steps=3), module.evaluate(3, steps=4)
    assert short[:3] == longer[:3]
    assert short[3] == pytest.approx(longer[3], rel=1e-6)


def test_mlp_on_mnist_reads_the_idx_files_and_sizes_the_input_layer(tmp_path):
    from tests.datamodules.test_mnist import _write_tree

    arrays = _write_tree(tmp_path, n_train=12)
    module = L2LMetaTrainer(task="mlp", unroll=2, truncation=1, hidden=4, mlp_batch=5, mlp_data="mnist",
                            data_dir=str(tmp_path))
    model, params, _, batches = module.optimisee(0)
    assert params["1.weight"].shape == (20, 784)
    x, _ = batches[0]
    pixels = torch.from_numpy(arrays["train"][0]).float() / 255
    assert x.shape == (5, 28, 28) and any(torch.equal(x[0], img) for img in pixels)
    assert all(math.isfinite(v) for v in module.evaluate(0))
    with pytest.raises(ValueError, match="mlp_data"):
        L2LMetaTrainer(task="mlp", mlp_data="cifar")
