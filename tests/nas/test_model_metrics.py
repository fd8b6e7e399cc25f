"""Child costs measured: FLOPs of one forward and latency (lit_automl.nas.model_metrics), in every evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_automl.datamodules import DigitsDataModule, HoldoutDataModule
from lit_automl.nas.evaluator import TrainingEvaluator
from lit_automl.nas.model_metrics import forward_flops, forward_latency, network_costs
from lit_automl.spaces import NB201Space


def test_flops_are_twice_the_multiply_adds_counted_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    conv = 2 * 3 * 8 * 3 * 3 * 8 * 8  # per output element: 3 x 3 x 3 multiply-adds, 8 x 8 x 8 outputs
    linear = 2 * 8 * 8 * 8 * 10
    assert forward_flops(net, (3, 8, 8)) == conv + linear


def test_latency_is_measured_in_eval_mode_and_leaves_the_modes_as_they_were():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append((self.training, torch.is_grad_enabled(), len(x)))
            return x

    net = nn.Sequential(nn.Linear(4, 4), Probe())
    net.train()
    assert forward_latency(net, (4,), batch_size=3, repeats=2) > 0
    assert seen == [(False, False, 3)] * 3  # one warm-up forward, then the two timed ones
    assert net.training and net[1].training
    costs = network_costs(net, (4,), batch_size=5)
    assert set(costs) == {"flops", "latency_batch1", "latency_batch"} and costs["flops"] == 2 * 4 * 4
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        forward_latency(net, (4,), batch_size=0)


def test_every_trained_child_reports_its_flops_and_latencies():
    space = NB201Space(C=4, N=1)
    evaluator = TrainingEvaluator(space, lambda: HoldoutDataModule(DigitsDataModule(batch_size=32), val_size=100))
    arch = space.decode([3, 1, 2, 0, 4, 3])
    metrics = evaluator.evaluate(arch, budget=1)
    torch.manual_seed(0)
    assert metrics["flops"] == forward_flops(space.build(arch, 1, 10), (1, 8, 8))
    assert metrics["latency_batch1"] > 0 and metrics["latency_batch"] > 0
