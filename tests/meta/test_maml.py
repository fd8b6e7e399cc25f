"""MAML / FOMAML: meta-gradients against an independent unrolled autograd computation, vmap vs loop,
adaptation, training, DDP, resume and bad input."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lit_automl.meta import MAML, ConvNet4, SinusoidMLP
from lit_automl.meta.functional import task_loss
from tests.meta.synthetic import PrototypeTaskData, assert_ddp_meta_parameters_identical, sinusoid_batch
from tests.resume_harness import assert_same_state, run_resumed

mse = nn.functional.mse_loss


def unrolled_meta_loss(model, support, query, inner_lr, steps, create_graph):
    """Mean query loss after ``steps`` SGD steps per task, written with torch.autograd.grad."""
    params = dict(model.named_parameters())
    losses = []
    for t in range(support[0].shape[0]):
        cur = dict(params)
        for _ in range(steps):
            loss = mse(torch.func.functional_call(model, cur, (support[0][t],)), support[1][t])
            grads = torch.autograd.grad(loss, list(cur.values()), create_graph=create_graph)
            cur = {n: p - inner_lr * g for (n, p), g in zip(cur.items(), grads)}
        losses.append(mse(torch.func.functional_call(model, cur, (query[0][t],)), query[1][t]))
    return torch.stack(losses).mean(), params


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_second_order_gradient_matches_unrolled_autograd(steps, batching):
    torch.manual_seed(0)
    m = MAML(SinusoidMLP(hidden=(16, 16)), inner_lr=0.05, inner_steps=steps, task_batching=batching)
    support, query = sinusoid_batch()
    grads, _ = m.meta_gradient(support, query)
    ref_loss, params = unrolled_meta_loss(m.model, support, query, 0.05, steps, create_graph=True)
    ref = torch.autograd.grad(ref_loss, list(params.values()))
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # ... and it is not the first-order one: the second derivatives matter here.
    fo_loss, params = unrolled_meta_loss(m.model, support, query, 0.05, steps, create_graph=False)
    fo = torch.autograd.grad(fo_loss, list(params.values()))
    assert max((a - b).abs().max() for a, b in zip(grads, fo)) > 1e-4


@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_first_order_is_the_query_gradient_at_the_adapted_parameters(batching):
    torch.manual_seed(0)
    m = MAML(SinusoidMLP(hidden=(16, 16)), inner_lr=0.05, inner_steps=2, first_order=True, task_batching=batching)
    support, query = sinusoid_batch()
    grads, _ = m.meta_gradient(support, query)
    expected = [torch.zeros_like(p) for p in m.model.parameters()]
    for t in range(3):
        adapted = m.adapt((support[0][t], support[1][t]), steps=2)
        leaf = {n: p.clone().requires_grad_() for n, p in adapted.adapted.items()}
        g = torch.autograd.grad(task_loss(m.model, leaf, {}, (query[0][t], query[1][t]), mse), list(leaf.values()))
        expected = [e + gi / 3 for e, gi in zip(expected, g)]
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_vmap_and_loop_agree_on_the_conv_model_with_batch_norm():
    torch.manual_seed(0)
    m = MAML(ConvNet4(n_way=5, hidden=8, blocks=2), loss="cross_entropy", inner_lr=0.4)
    batch = torch.utils.data.default_collate([PrototypeTaskData().train_dataloader().dataset[i] for i in range(3)])
    support, query = m.split_batch(batch)
    m._batching = "vmap"
    g_vmap, _ = m.meta_gradient(support, query)
    m._batching = "loop"
    g_loop, _ = m.meta_gradient(support, query)
    for a, b in zip(g_vmap, g_loop):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # Batch-norm parameters are learned in the outer loop only, but they do get a meta-gradient.
    names = [n for n, _ in m.model.named_parameters()]
    assert "features.1.weight" not in m.adapt_names
    assert g_vmap[names.index("features.1.weight")].abs().sum() > 0


def test_auto_batching_falls_back_to_the_loop_with_the_reason():
    class NotVmappable(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 1)

        def forward(self, x):
            if x.sum() > 1e9:  # data-dependent control flow: vmap cannot run it
                return x
            return self.lin(x)

    m = MAML(NotVmappable(), task_batching="auto")
    support, query = sinusoid_batch()
    with pytest.warns(UserWarning, match="vmap cannot run NotVmappable"):
        m.meta_gradient(support, query)
    assert m._batching == "loop"
    with pytest.raises(RuntimeError):
        MAML(NotVmappable(), task_batching="vmap").meta_gradient(support, query)


def test_adapt_leaves_the_meta_parameters_untouched():
    m = MAML(SinusoidMLP(), inner_lr=0.01)
    before = {n: p.detach().clone() for n, p in m.model.named_parameters()}
    support, query = sinusoid_batch(tasks=1, k=10)
    adapted = m.adapt((support[0][0], support[1][0]), steps=10)
    for n, p in m.model.named_parameters():
        assert torch.equal(p, before[n])
        assert not torch.equal(adapted.adapted[n], before[n])
    pre = mse(m(query[0][0]), query[1][0])
    post = mse(adapted(query[0][0]), query[1][0])
    assert post < pre  # ten steps on the task's support points help on its query points


def trainer(tmp_path, **kw):
    kw = {"max_epochs": 2, "logger": False, "enable_checkpointing": False, **kw}
    return pl.Trainer(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, num_sanity_val_steps=0, **kw)


def test_meta_training_improves_post_adaptation_accuracy(tmp_path):
    pl.seed_everything(0)
    m = MAML(ConvNet4(n_way=5, hidden=8, blocks=2), loss="cross_entropy", inner_lr=0.4, eval_inner_steps=3,
             meta_lr=3e-3)
    data = PrototypeTaskData(tasks=16, tasks_per_batch=4)
    t = trainer(tmp_path, max_epochs=4)
    before = t.validate(m, data.val_dataloader(), verbose=False)[0]["val/acc"]
    t.fit(m, data)
    after = t.validate(m, data.val_dataloader(), verbose=False)[0]["val/acc"]
    assert after > before


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
    runs = run_resumed(lambda: MAML(ConvNet4(n_way=5, hidden=4, blocks=2), loss="cross_entropy", inner_lr=0.4),
                       lambda: PrototypeTaskData(tasks=4), tmp_path, {"max_epochs": 1}, max_epochs=3,
                       limit_val_batches=0)
    assert_same_state(runs.full, runs.resumed, atol=1e-6)


@pytest.mark.ddp
def test_ddp_meta_parameters_stay_identical(tmp_path):
    pl.seed_everything(0)
    assert_ddp_meta_parameters_identical(MAML(ConvNet4(n_way=5, hidden=4, blocks=2), loss="cross_entropy", inner_lr=0.4), tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    (dict(inner_lr=0.0), "inner_lr"), (dict(inner_lr=-0.1), "inner_lr"), (dict(meta_lr=0), "meta_lr"),
    (dict(inner_steps=0), "inner_steps"), (dict(loss="hinge"), "loss"), (dict(task_batching="pmap"), "task_batching"),
    (dict(first_order="yes"), "first_order"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MAML(SinusoidMLP(), **kwargs)


def test_models_that_cannot_be_called_functionally_are_refused():
    with pytest.raises(TypeError, match="nn.Module"):
        MAML(lambda x: x)
    with pytest.raises(ValueError, match="no parameters"):
        MAML(nn.ReLU())


def test_unpaired_batches_are_refused():
    m = MAML(SinusoidMLP())
    with pytest.raises(TypeError, match="support.*query"):
        m.split_batch((torch.zeros(2, 3, 1), torch.zeros(2, 3, 1)))
    support, query = sinusoid_batch(tasks=2)
    with pytest.raises(ValueError, match="2 tasks but query has 1"):
        m.split_batch({"support": support, "query": (query[0][:1], query[1][:1])})


def test_paper_defaults():
    hp = MAML(SinusoidMLP()).hparams
    assert (hp.inner_lr, hp.inner_steps, hp.meta_lr, hp.first_order, hp.loss) == (0.01, 1, 1e-3, False, "mse")
    assert sum(p.numel() for p in SinusoidMLP().parameters()) == 1 * 40 + 40 + 40 * 40 + 40 + 40 + 1
