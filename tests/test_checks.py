"""lit_automl._checks: one validation convention for every argument."""

import math

import numpy as np
import pytest
import torch

from lit_automl._checks import (
    ArgumentTypeError,
    UnknownNameError,
    check_bool,
    check_choice,
    check_int,
    check_real,
    check_sequence,
    lookup,
)


def test_check_int_returns_the_normalised_value():
    assert check_int("n", 3, low=1) == 3
    assert type(check_int("n", np.int64(4), low=1)) is int
    assert check_int("n", torch.tensor(5), low=1) == 5
    assert check_int("n", None, allow_none=True) is None


@pytest.mark.parametrize("value", [True, 2.0, "3", None, [1]])
def test_check_int_refuses_other_types_with_both_exception_classes(value):
    with pytest.raises(ArgumentTypeError, match=r"n must be an int >= 1, got"):
        check_int("n", value, low=1)
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ValueError)


def test_check_int_bounds_are_named_in_the_message():
    with pytest.raises(ValueError, match=r"^n must be an int >= 1, got 0$"):
        check_int("n", 0, low=1)
    with pytest.raises(ValueError, match=r"^n must be an int in \[1, 3\], got 4$"):
        check_int("n", 4, low=1, high=3)
    with pytest.raises(ValueError, match=r"^n must be an int <= 3 or None \(per epoch\), got 4$"):
        check_int("n", 4, high=3, allow_none=True, hint="per epoch")
    with pytest.raises(ValueError) as info:
        check_int("n", -1, low=0)
    assert not isinstance(info.value, TypeError)  # a bad value, not a bad type


def test_check_real_bounds_open_and_closed():
    assert check_real("lr", 1, low=0, low_open=True) == 1.0
    assert check_real("p", 0.0, low=0, high=1, high_open=True) == 0.0
    with pytest.raises(ValueError, match=r"^p must be a number in \[0, 1\), got 1.0$"):
        check_real("p", 1.0, low=0, high=1, high_open=True)
    with pytest.raises(ValueError, match=r"^lr must be a number > 0, got 0$"):
        check_real("lr", 0, low=0, low_open=True)
    with pytest.raises(ValueError, match="got nan"):
        check_real("lr", math.nan)
    with pytest.raises(ValueError, match="got inf"):
        check_real("lr", math.inf, low=0)
    assert check_real("timeout", math.inf, low=0, allow_inf=True) == math.inf
    with pytest.raises(ArgumentTypeError, match="got True"):
        check_real("lr", True)
    with pytest.raises(ArgumentTypeError, match=r"got \[0.1\]"):
        check_real("lr", [0.1])
    assert check_real("lr", np.float32(0.5)) == 0.5


def test_check_bool_and_choice():
    assert check_bool("hard", False) is False
    with pytest.raises(ArgumentTypeError, match="hard must be True or False, got 1"):
        check_bool("hard", 1)
    assert check_choice("join", "mean", ("mean", "sum")) == "mean"
    with pytest.raises(ValueError, match=r"^join must be one of \['mean', 'sum'\], got 'max'$"):
        check_choice("join", "max", ("sum", "mean"))
    with pytest.raises(ValueError, match="got \\[1\\]"):
        check_choice("order", [1], (1, 2))  # unhashable values are simply not a choice


def test_lookup_lists_valid_names():
    registry = {"b": 2, "a": 1}
    assert lookup(registry, "a", "op") == 1
    with pytest.raises(UnknownNameError) as info:
        lookup(registry, "c", "operation")
    assert str(info.value) == "unknown operation 'c'; valid names are: 'a', 'b'"
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownNameError, match="unknown op \\['a'\\]"):
        lookup(registry, ["a"], "op")


def test_allowed_replaces_the_description_but_not_the_check():
    with pytest.raises(ValueError, match=r"^C must be a positive int, got 0$"):
        check_int("C", 0, low=1, allowed="a positive int")
    with pytest.raises(ValueError, match=r"^p must be in \[0, 1\), got 1$"):
        check_real("p", 1, low=0, high=1, high_open=True, allowed="in [0, 1)")
    assert check_real("p", 0.5, low=0, high=1, high_open=True, allowed="in [0, 1)") == 0.5


def test_choices_keep_their_order_when_asked():
    with pytest.raises(ValueError, match=r"must be one of \['cosine', 'constant'\], got 'step'"):
        check_choice("schedule", "step", ("cosine", "constant"), sort=False)


def test_check_bool_wording_can_follow_the_config_format():
    with pytest.raises(ArgumentTypeError, match=r"^report must be true or false, got 'yes'$"):
        check_bool("report", "yes", allowed="true or false")


def test_choice_description_can_be_given():
    with pytest.raises(ValueError, match=r"^join must be one of \('mean', 'sum'\), got 'max'$"):
        check_choice("join", "max", ("mean", "sum"), allowed="one of ('mean', 'sum')")


def test_check_sequence_quotes_the_whole_value():
    def positive(n, v):
        return check_int(n, v, low=1)

    assert check_sequence("layers", [3, np.int64(5)], positive, allowed="ints >= 1") == (3, 5)
    assert check_sequence("shape", (), positive, allowed="ints >= 1") == ()
    with pytest.raises(ValueError, match=r"^layers must hold ints >= 1, got \(3, 0\)$") as info:
        check_sequence("layers", (3, 0), positive, allowed="ints >= 1")
    assert not isinstance(info.value, TypeError)
    with pytest.raises(ArgumentTypeError, match=r"^layers must hold ints >= 1, got \[3, 'x'\]$"):
        check_sequence("layers", [3, "x"], positive, allowed="ints >= 1")
    with pytest.raises(ArgumentTypeError, match=r"^layers must be a non-empty sequence of ints >= 1, got \(\)$"):
        check_sequence("layers", (), positive, allowed="ints >= 1", min_len=1)
    with pytest.raises(ArgumentTypeError, match=r"^layers must be a sequence of ints >= 1, got '34'$"):
        check_sequence("layers", "34", positive, allowed="ints >= 1")


def test_check_power_of_two_accepts_powers_and_names_the_rest():
    from lit_automl._checks import check_power_of_two

    assert [check_power_of_two("base", v, low=2) for v in (2, 4, 8, 1024)] == [2, 4, 8, 1024]
    for bad in (3, 6, 12):
        with pytest.raises(ValueError, match=rf"^base must be a power of 2 >= 2, got {bad}$"):
            check_power_of_two("base", bad, low=2)
    with pytest.raises(ValueError, match=r"^base must be leaves of the tree, got 1$"):
        check_power_of_two("base", 1, low=2, allowed="leaves of the tree")
    with pytest.raises(TypeError, match=r"base must be a power of 2 >= 1, got 2.0"):
        check_power_of_two("base", 2.0)



def test_check_token_lists_the_allowed_tokens_in_their_order():
    from lit_automl._checks import check_token

    assert check_token("rule 'x'", "binary", "mul", ["add", "mul"]) == "mul"
    with pytest.raises(ValueError, match=r"^rule 'x' has the unknown binary 'muls'; allowed: add, mul$"):
        check_token("rule 'x'", "binary", "muls", ["add", "mul"])


def test_check_instance_names_what_is_supported_and_the_value():
    from lit_automl._checks import check_instance

    assert check_instance("x", 1.5, float, allowed="a float") == 1.5
    assert check_instance("x", 2.0, (int, float), allowed="a number > 0", condition=lambda v: v > 0) == 2.0
    with pytest.raises(ValueError, match=r"^x must be a float, got 'a'$"):
        check_instance("x", "a", float, allowed="a float")
    with pytest.raises(ValueError, match=r"^x must be a number > 0, got -1.0$"):
        check_instance("x", -1.0, float, allowed="a number > 0", condition=lambda v: v > 0)
