"""Tests for the DARTS recurrent genotype: type, text/JSON/file forms, published cells, derivation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_automl._checks import UnknownNameError
from lit_automl.spaces import derive_recurrent, num_recurrent_edges, recurrent_edge_slices
from lit_automl.spaces.genotype import Genotype, GenotypeParseError, UnknownOperationError
from lit_automl.spaces.genotype_files import save_genotype_files
from lit_automl.spaces.op_names import DARTS_RNN_OPS, OP_NAMES, RECURRENT_OP_SETS, get_recurrent_op_set
from lit_automl.spaces.published import (PUBLISHED_GENOTYPES, PUBLISHED_RECURRENT_GENOTYPES, get_genotype,
                                         get_recurrent_genotype, resolve_recurrent_genotype)
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype, UnknownActivationError
from tests.spaces.genotype_cases import DARTS_V2_TEXT

# The authors' rnn/genotypes.py lines, character for character.
V1_TEXT = ("Genotype(recurrent=[('relu', 0), ('relu', 1), ('tanh', 2), ('relu', 3), ('relu', 4), ('identity', 1), "
           "('relu', 5), ('relu', 1)], concat=range(1, 9))")
V2_TEXT = ("Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ('relu', 1), ('identity', 1), ('tanh', 2), "
           "('sigmoid', 5), ('tanh', 3), ('relu', 5)], concat=range(1, 9))")
SMALL = [("tanh", 0), ("relu", 1), ("identity", 0)]


# --------------------------------------------------------------------------- op names
def test_recurrent_op_set_is_kept_apart_from_cnn_names() -> None:
    assert get_recurrent_op_set("darts_rnn") == DARTS_RNN_OPS == ("none", "tanh", "relu", "sigmoid", "identity")
    assert RECURRENT_OP_SETS == {"darts_rnn": DARTS_RNN_OPS}
    assert not {"tanh", "relu", "sigmoid", "identity"} & OP_NAMES
    with pytest.raises(UnknownNameError, match=r"'darts'.*darts_rnn"):
        get_recurrent_op_set("darts")


def test_cnn_genotype_refuses_a_recurrent_activation() -> None:
    with pytest.raises(UnknownOperationError, match=r"\['tanh'\]"):
        Genotype.parse(DARTS_V2_TEXT.replace("'dil_conv_3x3'", "'tanh'"))


# --------------------------------------------------------------------------- the type
def test_fields_are_normalised_and_equality_ignores_the_input_form() -> None:
    a = RecurrentGenotype(recurrent=SMALL, concat=range(1, 4))
    b = RecurrentGenotype(recurrent=tuple(list(n) for n in SMALL), concat=(1, 2, 3))
    assert a.recurrent == (("tanh", 0), ("relu", 1), ("identity", 0)) and a.concat == (1, 2, 3)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.steps == 3 and a.op_names() == {"tanh", "relu", "identity"}
    assert a != RecurrentGenotype(recurrent=SMALL, concat=[1, 3])
    with pytest.raises(AttributeError):
        a.concat = (1,)  # type: ignore[misc]


def test_a_single_node_cell_is_valid() -> None:
    g = RecurrentGenotype([("sigmoid", 0)], [1])
    assert str(g) == "Genotype(recurrent=[('sigmoid', 0)], concat=[1])"
    assert RecurrentGenotype.parse(str(g)) == g


@pytest.mark.parametrize("recurrent, concat, error, match", [
    ([("swish", 0)], [1], UnknownActivationError, r"unknown activation 'swish'; valid names are: identity, relu, "
                                                  r"sigmoid, tanh"),
    ([("tanh", 0), ("none", 1)], [1, 2], ValueError, r"node 1 \(state 2\): activation 'none' .*allowed: identity"),
    ([("tanh", 0), ("relu", 2)], [1, 2], ValueError, r"predecessor 2 out of range; allowed 0\.\.1 \(0 = s0"),
    ([("tanh", -1)], [1], ValueError, r"predecessor -1 out of range; allowed 0\.\.0"),
    ([("tanh", True)], [1], ValueError, r"predecessor must be an int, got True"),
    ([("tanh", 0)], [], ValueError, r"concat is empty"),
    ([("tanh", 0)], [2], ValueError, r"concat: state index 2 out of range; allowed 0\.\.1"),
    ([("tanh", 0)], [1, 1], ValueError, r"repeats a state index"),
    ([], [1], ValueError, r"recurrent has no nodes; a recurrent cell needs at least 1"),
    ([("tanh", 0, 1)], [1], ValueError, r"a node must be a pair \(activation, predecessor\)"),
    ("tanh", [1], ValueError, r"recurrent must be a list"),
    ([(3, 0)], [1], ValueError, r"activation must be one of identity, relu, sigmoid, tanh, got 3"),
])
def test_bad_values_raise_naming_the_value_and_what_is_allowed(recurrent, concat, error, match) -> None:
    with pytest.raises(error, match=match):
        RecurrentGenotype(recurrent, concat)


def test_unknown_activation_is_an_unknown_name_error() -> None:
    with pytest.raises(UnknownNameError):
        RecurrentGenotype([("sep_conv_3x3", 0)], [1])


# --------------------------------------------------------------------------- text, JSON, files
def test_parses_the_authors_exact_text_and_prints_it_back() -> None:
    for text, name in ((V1_TEXT, "DARTS_V1"), (V2_TEXT, "DARTS_V2")):
        g = RecurrentGenotype.parse(text)
        assert g == PUBLISHED_RECURRENT_GENOTYPES[name]
        assert str(g) == repr(g) == text


def test_parse_accepts_layout_variants_and_a_module_prefix() -> None:
    g = RecurrentGenotype.parse("""genotypes.Genotype(
        recurrent = [['tanh', 0], ('relu', 1), ('identity', 0),],
        concat = (1, 2, 3))""")
    assert g == RecurrentGenotype(SMALL, range(1, 4))
    assert RecurrentGenotype.parse("Genotype([('tanh', 0)], [1])") == RecurrentGenotype([("tanh", 0)], [1])


@pytest.mark.parametrize("text, error, match", [
    ("Genotype(recurrent=[('swish', 0)], concat=[1])", UnknownOperationError,
     r"unknown activation 'swish'; valid names are: identity, relu, sigmoid, tanh: \"'swish'\""),
    ("Genotype(recurrent=[('tanh', 0), ('none', 0)], concat=[1, 2])", GenotypeParseError, r"'none'.*\"'none'\""),
    ("Genotype(recurrent=[('tanh', 0), ('relu', 7)], concat=[1])", GenotypeParseError, r"predecessor 7.*: \"7\"$"),
    ("Genotype(recurrent=[('tanh', 0)], concat=range(1, 1))", GenotypeParseError, r"concat is empty"),
    ("Genotype(recurrent=[('tanh', 0)], concat=[0, 5])", GenotypeParseError, r"state index 5 out of range.*: \"5\""),
    ("Genotype(recurrent=[], concat=[1])", GenotypeParseError, r"no nodes"),
    ("Genotype(recurrent=[('tanh', 0)], concat=[1], normal=[])", GenotypeParseError,
     r"unknown keyword 'normal'; expected one of \['recurrent', 'concat'\]"),
    ("Genotype(recurrent=[('tanh', x)], concat=[1])", GenotypeParseError, r"predecessor must be an int literal"),
    ("Genotype(recurrent=[('tanh', 0)]", GenotypeParseError, r"malformed genotype text"),
    ("__import__('os').system('true')", GenotypeParseError, r"expected a call Genotype\(recurrent=..., concat=...\)"),
])
def test_parse_errors_quote_the_bad_part(text: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        RecurrentGenotype.parse(text)


def test_cnn_text_is_refused_by_the_recurrent_reader_and_back() -> None:
    with pytest.raises(GenotypeParseError, match=r"unknown keyword 'normal'"):
        RecurrentGenotype.parse(DARTS_V2_TEXT)
    with pytest.raises(GenotypeParseError, match=r"unknown keyword 'recurrent'"):
        Genotype.parse(V2_TEXT)


@pytest.mark.parametrize("name", sorted(PUBLISHED_RECURRENT_GENOTYPES))
def test_round_trips_text_json_and_files(name: str, tmp_path: Path) -> None:
    g = PUBLISHED_RECURRENT_GENOTYPES[name]
    assert RecurrentGenotype.parse(str(g)) == g
    assert g.to_dict()["recurrent"][0] == [g.recurrent[0][0], g.recurrent[0][1]]
    assert RecurrentGenotype.from_dict(g.to_dict()) == g
    assert RecurrentGenotype.from_json(g.to_json(indent=2)) == g
    loaded_json = RecurrentGenotype.load(g.save(tmp_path / f"{name}.json"))
    loaded_text = RecurrentGenotype.load(g.save(tmp_path / f"{name}.txt"))
    assert loaded_json == g and loaded_text == g
    assert (tmp_path / f"{name}.txt").read_text().strip() == str(g)


def test_non_contiguous_concat_prints_as_a_list() -> None:
    g = RecurrentGenotype(SMALL, [3, 1])
    assert str(g).endswith("concat=[3, 1])")
    assert RecurrentGenotype.parse(str(g)) == g


def test_json_and_file_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing \['concat'\], unknown \['normal'\]"):
        RecurrentGenotype.from_dict({"recurrent": SMALL, "normal": []})
    with pytest.raises(GenotypeParseError, match=r"invalid genotype JSON .* line 1"):
        RecurrentGenotype.from_json('{"recurrent": [')
    with pytest.raises(FileNotFoundError, match=r"recurrent genotype file .*missing\.txt does not exist"):
        RecurrentGenotype.load(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("Genotype(recurrent=[('tanh', 0),\n ('relu', 9)], concat=[1, 2])\n")
    with pytest.raises(GenotypeParseError, match=r"genotype file .*bad\.txt: .*predecessor 9 out of range"):
        RecurrentGenotype.load(bad)
    broken = tmp_path / "broken.txt"
    broken.write_text("Genotype(recurrent=[('tanh', 0),\n ('relu' 0)], concat=[1, 2])\n")
    with pytest.raises(GenotypeParseError, match=r"genotype file .*broken\.txt: malformed .* at line 2"):
        RecurrentGenotype.load(broken)


def test_save_genotype_files_writes_text_and_json_for_a_recurrent_cell(tmp_path: Path) -> None:
    g = get_recurrent_genotype("DARTS_V2")
    paths = save_genotype_files(g, tmp_path / "run")
    assert [p.name for p in paths] == ["genotype.txt", "genotype.json"]
    assert all(RecurrentGenotype.load(p) == g for p in paths)


# --------------------------------------------------------------------------- published cells
def test_published_recurrent_cells_are_the_authors() -> None:
    v1, v2 = get_recurrent_genotype("DARTS_V1"), get_recurrent_genotype("darts-v2")
    assert v2.recurrent == (("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1),
                            ("tanh", 2), ("sigmoid", 5), ("tanh", 3), ("relu", 5))
    assert v1.recurrent == (("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3),
                            ("relu", 4), ("identity", 1), ("relu", 5), ("relu", 1))
    assert v1.concat == v2.concat == tuple(range(1, 9))
    assert get_recurrent_genotype("DARTS") is v2


def test_cnn_and_recurrent_lookups_stay_apart() -> None:
    assert isinstance(get_genotype("DARTS_V2"), Genotype)
    assert isinstance(get_recurrent_genotype("DARTS_V2"), RecurrentGenotype)
    assert not any(isinstance(g, RecurrentGenotype) for g in PUBLISHED_GENOTYPES.values())
    with pytest.raises(UnknownNameError, match=r"recurrent genotype 'PDARTS'; valid names are: 'DARTS', 'DARTS_V1', 'DARTS_V2'$"):
        get_recurrent_genotype("PDARTS")


def test_resolve_recurrent_genotype_forms(tmp_path: Path) -> None:
    g = RecurrentGenotype(SMALL, range(1, 4))
    assert resolve_recurrent_genotype(g) is g
    assert resolve_recurrent_genotype("darts_v1") == get_recurrent_genotype("DARTS_V1")
    assert resolve_recurrent_genotype(str(g)) == g
    assert resolve_recurrent_genotype(g.to_json()) == g
    assert resolve_recurrent_genotype(g.save(tmp_path / "g.json")) == g
    assert resolve_recurrent_genotype(str(g.save(tmp_path / "g.txt"))) == g
    with pytest.raises(ValueError, match=r"cannot resolve recurrent genotype spec 'NASNet_A'.*'DARTS_V1'"):
        resolve_recurrent_genotype("NASNet_A")
    with pytest.raises(ValueError, match=r"must be a str, a path or a RecurrentGenotype, got Genotype"):
        resolve_recurrent_genotype(get_genotype("DARTS"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- derivation
def test_recurrent_edge_layout() -> None:
    assert num_recurrent_edges(8) == 36
    assert recurrent_edge_slices(3) == [slice(0, 1), slice(1, 3), slice(3, 6)]


def _weights(steps: int, picks: dict) -> torch.Tensor:
    """Uniform low weights; ``picks[(node, predecessor)] = (column, value)`` raises one entry."""
    w = torch.full((num_recurrent_edges(steps), len(DARTS_RNN_OPS)), 0.1)
    for (node, pred), (col, value) in picks.items():
        w[recurrent_edge_slices(steps)[node].start + pred, col] = value
    return w


def test_derive_recurrent_picks_strongest_predecessor_then_activation() -> None:
    # columns: 0 none, 1 tanh, 2 relu, 3 sigmoid, 4 identity
    w = _weights(3, {(0, 0): (3, 0.6), (1, 0): (2, 0.3), (1, 1): (1, 0.5), (2, 2): (4, 0.7), (2, 0): (2, 0.4)})
    w[recurrent_edge_slices(3)[2].start + 1, 0] = 0.95  # a strong 'none' never wins an edge or a node
    g = derive_recurrent(w, "darts_rnn", steps=3)
    assert g == RecurrentGenotype([("sigmoid", 0), ("tanh", 1), ("identity", 2)], range(1, 4))


def test_derive_recurrent_ties_go_to_the_lower_predecessor_and_column() -> None:
    g = derive_recurrent(torch.full((3, 5), 0.2), steps=2)
    assert g == RecurrentGenotype([("tanh", 0), ("tanh", 0)], [1, 2])


def test_derive_recurrent_defaults_to_the_darts_cell_and_explicit_columns() -> None:
    g = derive_recurrent(torch.rand(36, 5).softmax(-1))
    assert g.steps == 8 and g.concat == tuple(range(1, 9)) and "none" not in g.op_names()
    g2 = derive_recurrent(torch.tensor([[0.9, 0.1]]), ["none", "relu"], steps=1)
    assert g2 == RecurrentGenotype([("relu", 0)], [1])


@pytest.mark.parametrize("weights, primitives, steps, match", [
    (torch.zeros(6, 5), "darts_rnn", 2, r"shape \(3, 5\) for a 2-node recurrent cell"),
    (torch.zeros(3, 5), "darts", 2, r"unknown recurrent op set 'darts'|'darts'.*darts_rnn"),
    (torch.zeros(3, 2), ["none", "sep_conv_3x3"], 2, r"unknown: \['sep_conv_3x3'\]"),
    (torch.zeros(3, 1), ["none"], 2, r"no operation other than 'none'"),
    (torch.zeros(0, 5), "darts_rnn", 0, r"steps must be an int >= 1"),
])
def test_derive_recurrent_bad_input(weights, primitives, steps, match) -> None:
    with pytest.raises(ValueError, match=match):
        derive_recurrent(weights, primitives, steps=steps)
