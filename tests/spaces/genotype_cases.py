"""Genotype texts and values shared by the genotype, genotype-text and published-cell tests."""

from __future__ import annotations

import pytest

from lit_automl.spaces import op_names
from lit_automl.spaces.genotype import Genotype

# The published DARTS second-order cell, as released with Liu et al. (ICLR 2019).
DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3, 4, 5])"
)
DARTS_V1_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], "
    "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], "
    "reduce_concat=range(2, 6))"
)
FAKE_OPS = ("a", "b", "c", "d", "e", "f", "it's", 'mu"op', "op # not a comment")
"""Short op names the reader's tests use; :func:`fake_op_names` makes them known for a test."""


@pytest.fixture
def fake_op_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """:data:`FAKE_OPS` known to the genotype reader for one test (names only, as ``register_op`` adds them):
    the reader's tests are about the text form, the registry check has its own (tests/spaces/test_bad_input.py)."""
    monkeypatch.setattr(op_names, "OP_NAMES", op_names.OP_NAMES | set(FAKE_OPS))


# Two flat nodes in each cell; used as the base of the malformed-text cases.
SMALL = "Genotype(normal=[('a', 0), ('b', 1)], normal_concat=[2], reduce=[('c', 0), ('d', 1)], reduce_concat=[2])"


def nested_genotype() -> Genotype:
    """A SNAS-style genotype: nodes with 1, 2 and 3 edges."""
    return Genotype(
        normal=[
            [("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("skip_connect", 0)],
            [("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("sep_conv_3x3", 2)],
            [("avg_pool_3x3", 3)],
        ],
        normal_concat=[2, 3, 4],
        reduce=[[("max_pool_3x3", 0), ("max_pool_3x3", 1)], [("sep_conv_3x3", 2)]],
        reduce_concat=[2, 3],
    )

