"""Encoding Optuna distributions to the unit cube and back: round trips, log scale, int bins,
one-hot categoricals, single values, errors."""

import math

import numpy as np
import pytest
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from lit_automl.hpo.gp.search_space import SearchSpace

SPACE = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "drop": FloatDistribution(0.0, 0.5),
    "wd": FloatDistribution(0.0, 1.0, step=0.25),
    "layers": IntDistribution(1, 8),
    "width": IntDistribution(16, 1024, log=True),
    "batch": IntDistribution(32, 256, step=32),
    "opt": CategoricalDistribution(["adam", "sgd", None, 3, True]),
    "fixed": IntDistribution(4, 4),
}


def test_layout():
    space = SearchSpace(SPACE)
    assert space.dim == 6 + 5  # six one-column parameters and a five-way one-hot
    assert [c.name for c in space.continuous] == ["lr", "drop"]
    assert [c.name for c in space.discrete] == ["wd", "layers", "width", "batch"]
    assert [c.name for c in space.categorical] == ["opt"] and space.categorical[0].columns == list(range(6, 11))
    assert space.fixed == {"fixed": 4} and space.n_params == 7


def test_round_trip_of_every_value_kind():
    space = SearchSpace(SPACE)
    rng = np.random.default_rng(0)
    for _ in range(100):
        params = {name: _draw(dist, rng) for name, dist in SPACE.items()}
        row = space.encode(params)
        assert bool(((row >= 0) & (row <= 1)).all())
        back = space.decode(row)
        assert back.keys() == params.keys()
        for name in params:
            if isinstance(params[name], float):
                assert back[name] == pytest.approx(params[name], rel=1e-12, abs=1e-15), name
            else:
                assert back[name] == params[name] and type(back[name]) is type(params[name]), name
        assert space.contains(back)


def _draw(dist, rng):
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[rng.integers(len(dist.choices))]
    if isinstance(dist, IntDistribution):
        if dist.log:
            return int(round(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))))
        return int(dist.low + dist.step * rng.integers((dist.high - dist.low) // dist.step + 1))
    if dist.step is not None:
        return float(dist.low + dist.step * rng.integers(round((dist.high - dist.low) / dist.step) + 1))
    if dist.log:
        return float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
    return float(rng.uniform(dist.low, dist.high))


def test_log_parameters_are_encoded_in_log_space():
    space = SearchSpace({"lr": FloatDistribution(1e-5, 1e-1, log=True)})
    assert float(space.encode({"lr": 1e-3})[0]) == pytest.approx(0.5)  # the geometric midpoint
    assert space.decode(torch.tensor([0.25], dtype=torch.float64))["lr"] == pytest.approx(1e-4)


def test_ints_are_relaxed_to_bin_centres_and_rounded():
    space = SearchSpace({"k": IntDistribution(1, 4)})
    centres = [float(space.encode({"k": k})[0]) for k in range(1, 5)]
    assert centres == pytest.approx([0.125, 0.375, 0.625, 0.875])
    for u, k in ((0.0, 1), (0.24, 1), (0.26, 2), (0.74, 3), (0.76, 4), (1.0, 4)):
        assert space.decode(np.array([u]))["k"] == k
    # log int: u decodes to the nearest integer of exp(u-scaled log range)
    log_space = SearchSpace({"w": IntDistribution(1, 100, log=True)})
    for w in (1, 2, 3, 10, 57, 99, 100):
        assert log_space.decode(log_space.encode({"w": w}))["w"] == w


def test_from_unit_and_project_land_on_valid_points():
    space = SearchSpace(SPACE)
    u = torch.rand(500, space.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = space.from_unit(u)
    torch.testing.assert_close(space.project(x), x)  # already valid
    for row in x[:50]:
        assert space.contains(space.decode(row))
    one_hot = x[:, space.categorical[0].columns]
    assert bool((one_hot.sum(1) == 1).all())
    # every category and every int value is reachable, with about equal frequency
    counts = torch.bincount(one_hot.argmax(1), minlength=5)
    assert int(counts.min()) > 70
    layers = [space.decode(row)["layers"] for row in x]
    assert sorted(set(layers)) == list(range(1, 9))
    noisy = x + 0.2 * torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    snapped = space.project(noisy)
    assert bool(((snapped >= 0) & (snapped <= 1)).all())
    torch.testing.assert_close(space.project(snapped), snapped)


def test_errors_name_the_parameter_and_value():
    space = SearchSpace(SPACE)
    params = {name: _draw(dist, np.random.default_rng(0)) for name, dist in SPACE.items()}
    with pytest.raises(ValueError, match=r"'layers'=9 is outside"):
        space.encode({**params, "layers": 9})
    with pytest.raises(ValueError, match=r"'opt'='rmsprop' is outside"):
        space.encode({**params, "opt": "rmsprop"})
    with pytest.raises(ValueError, match=r"'lr' is missing"):
        space.encode({k: v for k, v in params.items() if k != "lr"})
    assert not space.contains({**params, "batch": 33})
    with pytest.raises(ValueError, match=r"row has shape"):
        space.decode(np.zeros(3))



class _Unknown(BaseDistribution):
    """A distribution type the encoder does not know."""

    def single(self):
        return False

    def to_internal_repr(self, value):
        return float(value)

    def _contains(self, value):
        return True


def test_unknown_distribution_type_is_refused():
    with pytest.raises(TypeError, match=r"parameter 'x' has distribution .*supported: FloatDistribution"):
        SearchSpace({"x": _Unknown()})


def test_encode_active_marks_absent_parameters_with_nan():
    space = SearchSpace(SPACE)
    row = space.encode_active({"lr": 1e-3, "opt": "sgd", "fixed": 4})
    expected = torch.full((space.dim,), math.nan, dtype=torch.float64)
    expected[0] = 0.5  # log10 1e-3 halfway in [1e-5, 1e-1]
    expected[6:11] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(row, expected, equal_nan=True)
    full = {"lr": 1e-3, "drop": 0.1, "wd": 0.5, "layers": 3, "width": 64, "batch": 64, "opt": None, "fixed": 4}
    torch.testing.assert_close(space.encode_active(full), space.encode(full))
    with pytest.raises(ValueError, match=r"parameter 'layers'=9 is outside"):
        space.encode_active({"layers": 9})


def test_columns_of():
    space = SearchSpace(SPACE)
    assert space.columns_of("lr") == [0] and space.columns_of("opt") == [6, 7, 8, 9, 10]
    assert space.columns_of("fixed") == []
    with pytest.raises(ValueError, match=r"parameter 'nope' is not in the space"):
        space.columns_of("nope")
