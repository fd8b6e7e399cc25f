"""The activation language of activation search (Ramachandran, Zoph & Le 2018, Sec. 2): Swish and ReLU written in
it, every function against its formula, the betas' gradients, parsing and bad strings, and checkpoints."""

from __future__ import annotations

import io
import math

import pytest
import torch

from lit_automl.nas.activations import ACTIVATIONS, BETA_FUNCTIONS, BINARIES, UNARIES, Activation, parse_activation

XS = (-2.5, -1.0, -0.3, 0.2, 0.7, 1.9)
BETA = 0.6

UNARY_FORMULAS = {  # written with the math module, one float at a time (Sec. 2's list)
    "identity": lambda x: x, "neg": lambda x: -x, "abs": abs, "square": lambda x: x * x, "cube": lambda x: x * x * x,
    "sqrt": lambda x: math.sqrt(abs(x)), "mul_beta": lambda x: BETA * x, "add_beta": lambda x: x + BETA,
    "log_abs": lambda x: math.log(abs(x) + 1e-7), "exp": math.exp, "sin": math.sin, "cos": math.cos,
    "sinh": math.sinh, "cosh": math.cosh, "tanh": math.tanh, "asinh": math.asinh, "atan": math.atan,
    "sinc": lambda x: math.sin(x) / x, "max0": lambda x: max(x, 0.0), "min0": lambda x: min(x, 0.0),
    "sigmoid": lambda x: 1 / (1 + math.exp(-x)), "softplus": lambda x: math.log(1 + math.exp(x)),
    "gauss": lambda x: math.exp(-x * x), "erf": math.erf, "beta": lambda x: BETA,
}
BINARY_FORMULAS = {
    "add": lambda a, b: a + b, "mul": lambda a, b: a * b, "sub": lambda a, b: a - b,
    "div": lambda a, b: a / (b + 1e-7), "max": max, "min": min, "sigmoid_mul": lambda a, b: b / (1 + math.exp(-a)),
    "gauss_dist": lambda a, b: math.exp(-BETA * (a - b) ** 2), "laplace_dist": lambda a, b: math.exp(-BETA * abs(a - b)),
    "mix": lambda a, b: BETA * a + (1 - BETA) * b,
}


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_every_function_of_the_paper_is_in_the_language_and_tested():
    assert list(UNARIES) == list(UNARY_FORMULAS) and list(BINARIES) == list(BINARY_FORMULAS)
    assert BETA_FUNCTIONS == {"mul_beta", "add_beta", "beta", "gauss_dist", "laplace_dist", "mix"}


@pytest.mark.parametrize("name", list(UNARY_FORMULAS))
def test_unary_against_its_formula(name):
    x = torch.tensor(XS, dtype=torch.float64)
    want = torch.tensor([UNARY_FORMULAS[name](v) for v in XS], dtype=torch.float64)
    beta = torch.tensor(BETA, dtype=torch.float64)
    torch.testing.assert_close(UNARIES[name](x, beta if name in BETA_FUNCTIONS else None), want)
    # the same through the module: max(u(x), u(x)) = u(x), both betas at BETA
    module = Activation(f"x x {name} {name} max", beta_init=BETA).double()
    torch.testing.assert_close(module(x), want)


@pytest.mark.parametrize("name", list(BINARY_FORMULAS))
def test_binary_against_its_formula(name):
    a, b = torch.tensor(XS, dtype=torch.float64), torch.tensor(XS[::-1], dtype=torch.float64) * 0.7
    want = torch.tensor([BINARY_FORMULAS[name](p, q) for p, q in zip(a.tolist(), b.tolist())], dtype=torch.float64)
    beta = torch.tensor(BETA, dtype=torch.float64)
    torch.testing.assert_close(BINARIES[name](a, b, beta if name in BETA_FUNCTIONS else None), want)
    # through the module: b(x, sin(x))
    x = torch.tensor(XS, dtype=torch.float64)
    ref = torch.tensor([BINARY_FORMULAS[name](v, math.sin(v)) for v in XS], dtype=torch.float64)
    torch.testing.assert_close(Activation(f"x x identity sin {name}", beta_init=BETA).double()(x), ref)


def test_swish_is_x_sigmoid_beta_x_per_channel_and_swish_1_is_silu():
    x = _x(4, 3, 5, 5)
    swish = Activation("swish", num_channels=3).double()
    beta = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    with torch.no_grad():
        swish.betas["unit1_unary1"].copy_(beta)
    torch.testing.assert_close(swish(x), x * torch.sigmoid(beta.view(1, 3, 1, 1) * x))
    silu = torch.nn.SiLU()
    torch.testing.assert_close(Activation("swish_1").double()(x), silu(x))
    torch.testing.assert_close(Activation("swish", trainable_beta=False).double()(x), silu(x))  # beta fixed at 1
    assert not list(Activation("swish", trainable_beta=False).parameters())
    assert parse_activation("swish").formula() == "sigmoid(beta*x) * x"


def test_relu_written_in_the_language_is_torch_relu():
    x = _x(7, 4)
    torch.testing.assert_close(Activation("relu")(x), torch.relu(x))
    assert parse_activation("relu") == parse_activation("x x max0 max0 max")
    assert not list(Activation("relu").parameters())


def test_paper_functions_of_fig_3():
    x = _x(50)
    refs = {"max_x_sigmoid": torch.maximum(x, torch.sigmoid(x)), "cos_minus_x": torch.cos(x) - x,
            "min_x_sin": torch.minimum(x, torch.sin(x)), "max_x_tanh": torch.maximum(x, torch.tanh(x)),
            "sinc_plus_x": torch.sin(x) / x + x, "x_asinh_squared": x * torch.asinh(x) ** 2,
            "atan_squared_minus_x": torch.atan(x) ** 2 - x}
    for name, want in refs.items():
        torch.testing.assert_close(Activation(name)(x), want, msg=name)


def test_beta_gradients_match_finite_differences_and_the_closed_form():
    x = _x(3, 2, 4)
    for text in ("swish", "x x add_beta beta mul", "x x sin identity gauss_dist", "x x sin identity laplace_dist",
                 "x x identity tanh mix ; o1 x mul_beta identity sigmoid_mul"):
        module = Activation(text, num_channels=2, beta_init=0.8).double()
        names = [name for name, _ in module.named_parameters()]
        assert names, text

        def f(*betas, module=module, names=names):
            return torch.func.functional_call(module, dict(zip(names, betas)), (x,))

        betas = tuple(torch.tensor([0.8, -0.5], dtype=torch.float64, requires_grad=True) for _ in names)
        assert torch.autograd.gradcheck(f, betas), text
    # d/dbeta_c sum x sigmoid(beta_c x) = sum over channel c of x^2 s (1 - s), s = sigmoid(beta_c x)
    swish = Activation("swish", num_channels=2, beta_init=0.8).double()
    swish(x).sum().backward()
    s = torch.sigmoid(0.8 * x)
    torch.testing.assert_close(swish.betas["unit1_unary1"].grad, (x ** 2 * s * (1 - s)).sum(dim=(0, 2)))


@pytest.mark.parametrize("text, error, match", [
    ("", ValueError, "an activation must be a non-empty token string 'in1 in2 u1 u2 b"),
    ("   ", ValueError, "non-empty token string"),
    (None, ValueError, "non-empty token string"),
    ("x x relu identity max", ValueError,
     r"activation 'x x relu identity max': unit 1 has the unknown unary1 'relu'; allowed: identity, neg, abs, square"),
    ("x x identity identity pow", ValueError, r"unit 1 has the unknown binary 'pow'; allowed: add, mul, sub, div"),
    ("y x identity identity max", ValueError, r"unit 1 has the unknown input1 'y'; allowed: x$"),
    ("x o1 identity identity max", ValueError, r"unit 1 has the unknown input2 'o1'; allowed: x$"),
    ("x x sin sin add ; o2 x identity identity max", ValueError, r"unit 2 has the unknown input1 'o2'; allowed: x, o1$"),
    ("x x identity max", ValueError, r"unit 1 has 4 tokens .* each unit takes 5: input1 input2 unary1 unary2 binary"),
    ("x x sin sin add ;", ValueError, r"unit 2 has 0 tokens"),
    ("gelu", ValueError, r"unknown activation 'gelu'; valid names are: .*'relu'.*'swish'.*token string"),
])
def test_bad_strings_name_the_unit_position_token_and_allowed_ones(text, error, match):
    with pytest.raises(error, match=match):
        parse_activation(text)


def test_bad_module_arguments_and_inputs():
    with pytest.raises(ValueError, match="num_channels must be an int >= 1"):
        Activation("swish", num_channels=0)
    with pytest.raises(ValueError, match=r"betas for 3 channels \(dimension 1\); got an input of shape \(2, 4\)"):
        Activation("swish", num_channels=3)(torch.zeros(2, 4))


def test_strings_print_and_parse_both_ways():
    for text in ACTIVATIONS.values():
        program = parse_activation(text)
        assert str(program) == text and parse_activation(str(program)) == program
    assert parse_activation("  x  x sin  identity add  ").to_string() == "x x sin identity add"
    assert parse_activation("x x neg identity sigmoid_mul").formula() == "sigmoid(-x) * x"
    assert parse_activation("x x identity identity add ; o1 x square identity mul").formula() == "((x + x)^2) * x"
    assert parse_activation("x x identity identity add ; o1 x neg identity mul").formula() == "(-(x + x)) * x"
    assert parse_activation("x_asinh_squared").beta_slots() == []
    assert parse_activation("x x mul_beta beta mix").beta_slots() == ["unit1_unary1", "unit1_unary2", "unit1_binary"]


def test_betas_round_trip_through_a_checkpoint():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), Activation("x x mul_beta identity gauss_dist", num_channels=3))
    with torch.no_grad():
        for i, p in enumerate(net[1].parameters()):
            p.copy_(torch.tensor([0.3, 1.7, -0.4]) * (i + 1))
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), Activation("x x mul_beta identity gauss_dist", num_channels=3))
    fresh.load_state_dict(state)
    x = torch.randn(2, 1, 5, 5)
    torch.testing.assert_close(fresh(x), net(x))
    assert fresh[1].betas["unit1_binary"].tolist() == pytest.approx([0.6, 3.4, -0.8])
    other = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), Activation("x x mul_beta identity laplace_dist",
                                                                     num_channels=3))
    with pytest.raises(ValueError, match="saved by the activation 'x x mul_beta identity gauss_dist'; this module runs"):
        other.load_state_dict(state)
