"""The update-rule language of neural optimiser search (Bello et al., ICML 2017, Sec. 3.1): hand-designed optimisers
written in it take the same steps as torch.optim / PowerSign / AddSign; parsing, the space, and a search over rules."""

from __future__ import annotations

import math

import pytest
import torch

from lit_automl.meta import AddSign, PowerSign
from lit_automl.nas.update_rule_search import UpdateRuleEvaluator, UpdateRuleSpace
from lit_automl.nas.update_rules import BINARIES, RULES, UNARIES, UpdateRuleOptimizer, parse_rule
from tests.nas.unit_program_search import check_two_child_search

STEPS = 6


def _trajectory(make_optimizer, steps: int = STEPS) -> torch.Tensor:
    """Weights after ``steps`` updates on a fixed float64 least-squares problem (gradients depend on the weights)."""
    g = torch.Generator().manual_seed(0)
    A, b = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    w = torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
    opt = make_optimizer([w])
    for _ in range(steps):
        opt.zero_grad()
        ((A @ w - b) ** 2).sum().backward()
        opt.step()
    return w.detach()


def _same(rule, reference, lr: float = 0.01, **kwargs) -> None:
    got = _trajectory(lambda p: UpdateRuleOptimizer(p, rule, lr=lr, **kwargs))
    want = _trajectory(reference)
    assert not torch.allclose(got, _trajectory(lambda p: torch.optim.SGD(p, lr=1e-9)))  # the weights moved
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_sgd_rule_is_torch_sgd():
    _same(RULES["sgd"], lambda p: torch.optim.SGD(p, lr=0.01))


def test_momentum_rule_is_torch_sgd_with_momentum_at_lr_over_one_minus_beta():
    _same(RULES["momentum"], lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9), lr=0.01 / (1 - 0.9))


def test_adam_rule_is_torch_adam():
    _same(RULES["adam"], lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8))
    _same(RULES["adam"], lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.8, 0.99), eps=1e-6), lr=0.05, beta1=0.8,
          beta2=0.99, eps=1e-6)


def test_rmsprop_rule_is_torch_rmsprop():
    _same(RULES["rmsprop"], lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.999, eps=1e-8))


@pytest.mark.parametrize("decay, operand", [("none", None), ("linear", "ld"), ("cosine", "cd"), ("restart", "rd")])
def test_power_sign_and_add_sign_rules_are_the_optimisers(decay, operand):
    T = 4  # shorter than the run, so the decay reaches 0 (linear, cosine) or restarts
    kwargs = {} if decay == "none" else dict(sign_decay=decay, decay_steps=T)
    decayed = "" if operand is None else f" ; o1 {operand} identity identity mul"
    k = 1 if operand is None else 2
    power = f"sign_g sign_m identity identity mul{decayed} ; o{k} g exp identity mul"
    add = f"sign_g sign_m identity identity mul{decayed} ; o{k} 1 identity identity add ; o{k + 1} g identity identity mul"
    opt_kwargs = {} if operand is None else dict(decay_steps=T)
    _same(power, lambda p: PowerSign(p, lr=0.01, **kwargs), **opt_kwargs)
    _same(add, lambda p: AddSign(p, lr=0.01, **kwargs), **opt_kwargs)
    if operand == "ld":
        assert power == RULES["powersign_ld"] and add == RULES["addsign_ld"]


def test_power_sign_rule_against_the_paper_formula():
    # e^{sign(g) sign(m)} g, m the running average with beta 0.9, written out by hand
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = UpdateRuleOptimizer([w], "powersign", lr=0.1)
    ref, m = w.detach().clone(), torch.zeros(3, dtype=torch.float64)
    for grad in ([1.0, -1.0, 2.0], [-1.0, -3.0, 1.0], [2.0, 1.0, -4.0]):
        g = torch.tensor(grad, dtype=torch.float64)
        w.grad = g.clone()
        opt.step()
        m = 0.9 * m + 0.1 * g
        ref = ref - 0.1 * torch.exp(torch.sign(g) * torch.sign(m)) * g
    torch.testing.assert_close(w.detach(), ref)


def test_functions_follow_their_definitions():
    x, y = torch.tensor([-2.0, 0.0, 3.0]), torch.tensor([0.0, 2.0, -1.0])
    torch.testing.assert_close(BINARIES["div"](x, y), x / (y + 1e-8))
    torch.testing.assert_close(BINARIES["keep"](x, y), x)
    torch.testing.assert_close(BINARIES["pow"](torch.full((3,), 2.0), y), torch.tensor([1.0, 4.0, 0.5]))
    torch.testing.assert_close(UNARIES["log"](torch.tensor([-math.e, 1.0])), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(UNARIES["sqrt"](torch.tensor([-4.0, 9.0])), torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(UNARIES["clip3"](x), torch.tensor([-1e-3, 0.0, 1e-3]))
    torch.manual_seed(0)
    kept = (UNARIES["drop3"](torch.ones(20000)) == 1).float().mean()
    assert abs(float(kept) - 0.7) < 0.02


def test_weight_decay_and_constant_operands():
    w = torch.nn.Parameter(torch.tensor([1.0, -3.0], dtype=torch.float64))
    w.grad = torch.tensor([0.5, 0.5], dtype=torch.float64)
    UpdateRuleOptimizer([w], "g wd2 identity identity add", lr=0.1).step()  # w - 0.1 (g + 0.01 w)
    torch.testing.assert_close(w.detach(), torch.tensor([1.0 - 0.1 * 0.51, -3.0 - 0.1 * (0.5 - 0.03)], dtype=torch.float64))


def test_cubic_average_and_noise_operands():
    # y: running average of g^3 with beta3 (not bias corrected); noise: N(0, 0.01), i.e. std 0.1
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = UpdateRuleOptimizer([w], "y 1 identity identity mul", lr=1.0, beta3=0.5)
    y, ref = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for grad in ([1.0, -2.0, 0.5], [2.0, 1.0, -1.0]):
        g = torch.tensor(grad, dtype=torch.float64)
        w.grad = g.clone()
        opt.step()
        y = 0.5 * y + 0.5 * g ** 3
        ref = ref - y
    torch.testing.assert_close(w.detach(), ref)
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(40000))
    w.grad = torch.zeros(40000)
    UpdateRuleOptimizer([w], "noise 1 identity identity mul", lr=1.0).step()
    assert abs(float(w.detach().std()) - 0.1) < 0.003 and abs(float(w.detach().mean())) < 0.003


def test_rules_print_and_parse_both_ways():
    for text in RULES.values():
        rule = parse_rule(text)
        assert str(rule) == text and parse_rule(str(rule)) == rule
    assert parse_rule(RULES["powersign"]).formula() == "exp(sign(g) * sign(m)) * g"
    assert parse_rule(RULES["addsign"]).formula() == "(sign(g) * sign(m) + 1) * g"
    assert parse_rule("  g   1 identity identity mul ").to_string() == "g 1 identity identity mul"
    # powers and negations of compound terms keep their parentheses
    assert parse_rule("g m identity identity mul ; o1 2 identity identity pow").formula() == "(g * m)^2"
    assert parse_rule("g m identity identity add ; o1 1 neg identity mul").formula() == "-(g + m) * 1"
    assert parse_rule("2 g identity neg pow").formula() == "2^(-g)"


@pytest.mark.parametrize("text, match", [
    ("g 1 identity identity muls", r"unit 1 has the unknown binary 'muls'; allowed: add, sub, mul, div, pow, keep"),
    ("grad 1 identity identity mul", r"unknown operand1 'grad'; allowed: g, g2, g3, m"),
    ("g 1 tanh identity mul", r"unknown unary1 'tanh'; allowed: identity, neg, exp"),
    ("o1 1 identity identity mul", r"unit 1 has the unknown operand1 'o1'"),  # no earlier unit to read
    ("g 1 identity identity mul ; o2 g identity identity mul", r"unit 2 has the unknown operand1 'o2'.*o1$"),
    ("g 1 identity mul", r"unit 1 has 4 tokens .* each unit takes 5"),
    ("", "non-empty token string"),
])
def test_bad_rules_name_the_token_and_the_allowed_ones(text, match):
    with pytest.raises(ValueError, match=match):
        parse_rule(text)


def test_optimizer_refuses_bad_arguments():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match=r"decay_steps must be an int >= 1 \(T of the decay operands \['ld'\]"):
        UpdateRuleOptimizer(p, "powersign_ld")
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        UpdateRuleOptimizer(p, "sgd", lr=0.0)
    with pytest.raises(ValueError, match="beta2 must be a number in"):
        UpdateRuleOptimizer(p, "adam", beta2=1.0)


def test_optimizer_state_dict_round_trip():
    full = _trajectory(lambda p: UpdateRuleOptimizer(p, "adam", lr=0.01))
    g = torch.Generator().manual_seed(0)
    A, b = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    w = torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
    opt = UpdateRuleOptimizer([w], "adam", lr=0.01)
    for i in range(STEPS):
        if i == 3:
            state = opt.state_dict()
            opt = UpdateRuleOptimizer([w], "adam", lr=0.01)
            opt.load_state_dict(state)
        opt.zero_grad()
        ((A @ w - b) ** 2).sum().backward()
        opt.step()
    torch.testing.assert_close(w.detach(), full)
    with pytest.raises(ValueError, match="saved by the rule 'adam 1 identity identity mul'; this optimiser runs 'g 1"):
        UpdateRuleOptimizer([w], "sgd").load_state_dict(opt.state_dict())


def test_space_decodes_encodes_and_records_rules():
    space = UpdateRuleSpace(num_units=3)
    decisions = space.decisions()
    assert [d.name for d in decisions[:5]] == ["unit1.operand1", "unit1.operand2", "unit1.unary1", "unit1.unary2",
                                               "unit1.binary"]
    assert decisions[5].num_choices == decisions[0].num_choices + 1  # unit 2 may read o1
    rule = parse_rule(RULES["addsign"])
    actions = space.encode(rule)
    assert space.decode(actions) == rule
    assert space.from_json(space.to_json(rule)) == rule and space.from_json(RULES["addsign"]) == rule
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        acts = [int(torch.randint(d.num_choices, (1,), generator=g)) for d in decisions]
        assert space.encode(space.decode(acts)) == acts


def test_space_refuses_bad_vocabularies_and_rules_outside_it():
    with pytest.raises(ValueError, match="operands must be a non-empty sequence"):
        UpdateRuleSpace(operands=[])
    with pytest.raises(ValueError, match=r"operands must hold tokens of \['g', 'g2'.*got \['grad'\]"):
        UpdateRuleSpace(operands=["grad"])
    small = UpdateRuleSpace(operands=["g", "1"], unaries=["identity"], binaries=["mul"])
    with pytest.raises(ValueError, match="token 'adam' of unit 1 is not in this space's vocabulary"):
        small.encode(RULES["adam"])
    with pytest.raises(ValueError, match="has 2 units; this space's rules have 1"):
        small.encode(RULES["powersign"])


def _digits():
    from lit_automl.datamodules import DigitsDataModule

    return DigitsDataModule(batch_size=128)


def _evaluator(**kwargs) -> UpdateRuleEvaluator:
    return UpdateRuleEvaluator(UpdateRuleSpace(), _digits, filters=4,
                               trainer_kwargs=dict(limit_train_batches=4, limit_val_batches=2), **kwargs)


def test_evaluator_trains_the_child_with_the_rule():
    evaluator = _evaluator(lr=0.05)
    adam = evaluator.evaluate(RULES["adam"], 1)
    # the same update written another way trains the seeded child identically; twice the step does not
    assert evaluator.evaluate("adam 2 identity identity keep", 1)["val_acc_history"] == adam["val_acc_history"]
    assert evaluator.evaluate("adam 2 identity identity mul", 1)["val_acc_history"] != adam["val_acc_history"]
    assert adam["formula"] == "Adam * 1" and adam["params"] == 4 * 9 + 8 + 4 * 4 * 9 + 8 + 4 * 10 + 10


def test_evaluator_refuses_a_diverging_rule_and_bad_arguments():
    with pytest.raises(FloatingPointError, match="training diverged"):
        _evaluator().evaluate("g 2 identity sqrt pow", 1)  # g^sqrt(2): NaN where g < 0
    with pytest.raises(ValueError, match="space must be an UpdateRuleSpace"):
        UpdateRuleEvaluator(object(), _digits)
    with pytest.raises(ValueError, match="filters must be an int >= 1"):
        UpdateRuleEvaluator(UpdateRuleSpace(), _digits, filters=0)


def test_a_learning_rate_grid_scores_each_rule_by_its_best_learning_rate():
    grid = _evaluator(lr=[0.005, 0.05, 0.5])
    out = grid.evaluate(RULES["adam"], 1)
    single = {lr: _evaluator(lr=lr).evaluate(RULES["adam"], 1) for lr in (0.005, 0.05, 0.5)}
    assert out["lr_val_acc"] == {f"{lr:g}": r["val_acc"] for lr, r in single.items()}
    best = max(single, key=lambda lr: single[lr]["val_acc"])  # the first of ties, as the grid keeps it
    assert out["lr"] == best and out["val_acc_history"] == single[best]["val_acc_history"]
    assert "lr" in _evaluator(lr=0.05).evaluate(RULES["sgd"], 1)


def test_a_grid_skips_learning_rates_where_the_child_diverges():
    rule = "g wd1 identity identity add"  # g + 0.1 w: at lr 1e12 the weights grow 1e11-fold a step, to inf
    out = _evaluator(lr=[0.05, 1e12]).evaluate(rule, 1)
    assert out["lr"] == 0.05 and out["lr_val_acc"]["1e+12"] is None and out["lr_val_acc"]["0.05"] == out["val_acc"]
    with pytest.raises(FloatingPointError, match="diverged at every learning rate: lr 1e\\+11: .*lr 1e\\+12"):
        _evaluator(lr=[1e11, 1e12]).evaluate(rule, 1)
    for bad, match in (([], "non-empty sequence"), ([0.1, -1.0], "must hold learning rates > 0"),
                       ([0.1, 0.1], "must not repeat")):
        with pytest.raises(ValueError, match=match):
            _evaluator(lr=bad)


def test_search_over_rules_end_to_end(tmp_path):
    space = UpdateRuleSpace(operands=["g", "m", "adam", "sign_g", "1"], unaries=["identity", "neg", "sign"],
                            binaries=["mul", "add", "keep"])
    evaluator = UpdateRuleEvaluator(space, _digits, lr=[0.05, 0.5], filters=4,
                                    trainer_kwargs=dict(limit_train_batches=2, limit_val_batches=1))
    check_two_child_search(evaluator, tmp_path, algorithm="reinforce")


def test_paper_settings_recipe_carries_the_paper_settings(tmp_path, monkeypatch):
    from pathlib import Path

    from lit_automl.run_config import AutoMLCLI

    monkeypatch.chdir(tmp_path)
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "optimizer_search_cifar10.yaml"
    search = AutoMLCLI(args=["-c", str(recipe)], run=False).model
    hp, ev = search.hparams, search.evaluator
    assert (hp.algorithm, hp.hidden_size, hp.num_layers, hp.init_range, hp.lr, hp.entropy_weight) == (
        "ppo", 150, 1, 0.08, 1e-5, 0.0015)
    assert (hp.budget, ev.filters, ev.layers, ev.space.num_units) == (5, 32, 2, 2)
    assert ev.space.operands == parse_rule(RULES["sgd"]).language.inputs  # the whole Sec. 3.1 vocabulary


def test_shared_unit_language_checks_and_prints_both_languages():
    from lit_automl.nas.activations import parse_activation
    from lit_automl.nas.unit_programs import UnitProgram, substitute

    rule, act = parse_rule(RULES["powersign"]), parse_activation("swish")
    assert isinstance(rule, UnitProgram) and isinstance(act, UnitProgram) and rule != act
    assert rule.language.positions[0] == "operand1" and act.language.positions[0] == "input1"
    assert substitute(rule.units, {}, {"identity": "{}", "exp": "e^{}", "mul": "{}*{}"}) == "e^sign_g*sign_m*g"
    with pytest.raises(ValueError, match="an UpdateRule needs a non-empty tuple of Unit"):
        type(rule)(())
