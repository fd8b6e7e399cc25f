"""Activation search (Ramachandran, Zoph & Le 2018, Sec. 2-3): the space of core-unit activations, the ResNet child
with the activation in every place of ReLU, the evaluator, and a 2-child controller search end to end."""

from __future__ import annotations

import pytest
import torch

from lit_automl.nas.activation_search import ActivationEvaluator, ActivationSpace, activation_resnet
from lit_automl.nas.activations import ACTIVATIONS, Activation, parse_activation
from tests.nas.unit_program_search import check_two_child_search


def test_space_decodes_encodes_and_records_activations():
    space = ActivationSpace(num_units=2)
    decisions = space.decisions()
    assert [d.name for d in decisions[:5]] == ["unit1.input1", "unit1.input2", "unit1.unary1", "unit1.unary2",
                                               "unit1.binary"]
    assert [d.num_choices for d in decisions] == [1, 1, 25, 25, 10, 2, 2, 25, 25, 10]  # unit 2 may read o1
    act = parse_activation(ACTIVATIONS["atan_squared_minus_x"])
    actions = space.encode(act)
    assert actions[5:7] == [1, 0] and space.decode(actions) == act
    record = space.to_json(act)
    assert record == {"activation": str(act), "formula": "(atan(x) * atan(x) - x)"}
    assert space.from_json(record) == act and space.from_json("atan_squared_minus_x") == act
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        acts = [int(torch.randint(d.num_choices, (1,), generator=g)) for d in decisions]
        assert space.encode(space.decode(acts)) == acts
    small = ActivationSpace(unaries=["identity", "sigmoid", "mul_beta"], binaries=["sigmoid_mul", "max"])
    assert len(small.decisions()) == 5 and small.decode(small.encode("swish")) == parse_activation("swish")


def test_space_refuses_bad_vocabularies_and_activations_outside_it():
    with pytest.raises(ValueError, match="unaries must be a non-empty sequence"):
        ActivationSpace(unaries=[])
    with pytest.raises(ValueError, match=r"binaries must hold tokens of \['add', 'mul'.*got \['pow'\]"):
        ActivationSpace(binaries=["pow"])
    with pytest.raises(ValueError, match="unaries must not repeat a token"):
        ActivationSpace(unaries=["sin", "sin"])
    with pytest.raises(ValueError, match="num_units must be an int >= 1"):
        ActivationSpace(num_units=0)
    small = ActivationSpace(unaries=["identity", "sigmoid"], binaries=["sigmoid_mul"])
    with pytest.raises(ValueError, match="token 'mul_beta' of unit 1 is not in this space's vocabulary"):
        small.encode("swish")
    with pytest.raises(ValueError, match="has 2 units; this space's activations have 1"):
        small.encode("x_asinh_squared")
    with pytest.raises(ValueError, match=r"an activation takes 5 tokens \(input1 input2 unary1 unary2 binary per "
                                         r"unit\), got 4"):
        small.decode([0, 0, 0, 0])
    with pytest.raises(ValueError, match='an activation record must hold a "activation" entry'):
        small.from_json({"rule": "x x sin sin add"})


def test_resnet_child_puts_the_activation_in_every_relu_place():
    net = activation_resnet(1, 10, "swish", width=4, blocks=1)
    acts = [m for m in net.modules() if isinstance(m, Activation)]
    assert len(acts) == 1 + 3 * 2  # stem + two per basic block
    assert [a.num_channels for a in acts] == [4, 4, 4, 8, 8, 16, 16]
    # ResNet-20 (blocks 3, width 16): 19 weighted layers + the classifier; its ReLU version has He et al.'s 0.27M
    resnet20 = activation_resnet(3, 10, "relu")
    convs = [m for m in resnet20.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 and sum(p.numel() for p in resnet20.parameters()) == pytest.approx(0.27e6, rel=0.01)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    # with ReLU the block is conv-BN-ReLU-conv-BN + zero-padded, subsampled shortcut, ReLU (option A)
    block = activation_resnet(1, 10, "relu", width=2, blocks=1)[4]
    x = torch.randn(1, 2, 4, 4)
    block.eval()
    out = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    shortcut = torch.cat([x[:, :, ::2, ::2], torch.zeros(1, 2, 2, 2)], dim=1)
    torch.testing.assert_close(block(x), torch.relu(out + shortcut))


def _digits():
    from lit_automl.datamodules import DigitsDataModule

    return DigitsDataModule(batch_size=128)


def _evaluator(space=None, **kwargs) -> ActivationEvaluator:
    return ActivationEvaluator(space or ActivationSpace(), _digits, width=4, blocks=1,
                               trainer_kwargs=dict(limit_train_batches=3, limit_val_batches=2), **kwargs)


def test_evaluator_trains_the_child_with_the_activation():
    evaluator = _evaluator()
    relu = evaluator.evaluate("relu", 1)
    assert set(relu) >= {"val_acc", "val_acc_history", "params", "activation", "formula"}
    assert 0.0 <= relu["val_acc"] <= 1.0 and relu["activation"] == ACTIVATIONS["relu"]
    # the same function written another way trains the seeded child identically; another function does not
    assert evaluator.evaluate("x x max0 max0 min", 1)["val_acc_history"] == relu["val_acc_history"]
    assert evaluator.evaluate("x x identity identity add", 1)["val_acc_history"] != relu["val_acc_history"]
    swish = evaluator.evaluate("swish", 1)
    assert swish["params"] == relu["params"] + 4 + 2 * 4 + 2 * 8 + 2 * 16  # one beta per channel and place


def test_evaluator_refuses_a_diverging_activation_and_bad_arguments():
    with pytest.raises(FloatingPointError, match="training diverged"):
        _evaluator().evaluate("x x exp exp mul ; o1 o1 exp exp mul", 1)  # exp(2 exp(2x)): overflows to inf
    with pytest.raises(ValueError, match="space must be an ActivationSpace"):
        ActivationEvaluator(object(), _digits)
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        ActivationEvaluator(ActivationSpace(), _digits, width=0)
    with pytest.raises(ValueError, match="budget \\(epochs\\) must be an int >= 1"):
        _evaluator().evaluate("relu", 0)
    with pytest.raises(ValueError, match="unknown unary1 'relu'"):
        _evaluator().evaluate("x x relu relu max", 1)


def test_search_over_activations_end_to_end(tmp_path):
    space = ActivationSpace(unaries=["identity", "sigmoid", "max0", "tanh"], binaries=["mul", "max", "sigmoid_mul"])
    evaluator = ActivationEvaluator(space, _digits, width=4, blocks=1,
                                    trainer_kwargs=dict(limit_train_batches=2, limit_val_batches=1))
    check_two_child_search(evaluator, tmp_path, algorithm="ppo")


def test_recipes_carry_the_settings(tmp_path, monkeypatch):
    from pathlib import Path

    from lit_automl.run_config import AutoMLCLI

    monkeypatch.chdir(tmp_path)
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    paper = AutoMLCLI(args=["-c", str(recipes / "activation_search_cifar10.yaml")], run=False).model
    hp, ev = paper.hparams, paper.evaluator
    assert (hp.algorithm, hp.budget, hp.reward) == ("ppo", 28, "final")
    assert 28 * -(-45000 // 128) == pytest.approx(10_000, rel=0.02)  # the paper's 10K child steps
    assert (ev.width, ev.blocks, ev.space.num_units, ev.datamodule.val_size) == (16, 3, 2, 5000)  # ResNet-20
    assert len(ev.space.unaries) == 25 and len(ev.space.binaries) == 10
    digits = AutoMLCLI(args=["-c", str(recipes / "activation_search_digits.yaml")], run=False).model
    assert digits.evaluator.space.num_units == 1 and digits.hparams.algorithm == "ppo"
