"""Tests for lit_automl.spaces.genotype: validation, the DARTS text form, JSON/files, published cells."""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import pickle
import re
import sys
from pathlib import Path

import pytest

from lit_automl.spaces import genotype as genotype_module
from lit_automl.spaces.genotype import (
    PUBLISHED_GENOTYPES,
    CellView,
    Genotype,
    GenotypeParseError,
    get_genotype,
    resolve_genotype,
)

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


# --------------------------------------------------------------------------- published cells
def test_darts_v2_matches_the_published_text_exactly() -> None:
    g = PUBLISHED_GENOTYPES["DARTS_V2"]
    assert Genotype.parse(DARTS_V2_TEXT) == g
    assert str(g) == DARTS_V2_TEXT
    assert repr(g) == DARTS_V2_TEXT
    assert g.normal[3] == (("skip_connect", 0), ("dil_conv_3x3", 2))
    assert g.reduce_concat == (2, 3, 4, 5)


def test_darts_v1_matches_the_published_cell_and_range_concat() -> None:
    g = Genotype.parse(DARTS_V1_TEXT)
    assert g == PUBLISHED_GENOTYPES["DARTS_V1"]
    assert g.normal_concat == (2, 3, 4, 5)
    assert g.flat_edges("reduce")[-1] == ("avg_pool_3x3", 0)
    assert g != PUBLISHED_GENOTYPES["DARTS_V2"]


def test_darts_alias_and_names() -> None:
    assert PUBLISHED_GENOTYPES["DARTS"] is PUBLISHED_GENOTYPES["DARTS_V2"]
    assert {"DARTS", "DARTS_V1", "DARTS_V2"} <= set(PUBLISHED_GENOTYPES)
    for name, g in PUBLISHED_GENOTYPES.items():
        assert g.is_flat and g.all_add
        assert g.steps == (5 if name == "NASNet_A" else 4)  # NASNet has B = 5 blocks per cell


@pytest.mark.parametrize("name", sorted(PUBLISHED_GENOTYPES))
def test_published_round_trips(name: str, tmp_path: Path) -> None:
    g = PUBLISHED_GENOTYPES[name]
    assert Genotype.parse(str(g)) == g
    assert Genotype.from_dict(g.to_dict()) == g
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_json(g.to_json(indent=2)) == g
    assert Genotype.load(g.save(tmp_path / f"{name}.json")) == g
    assert Genotype.load(g.save(tmp_path / f"{name}.txt")) == g


def test_get_genotype_lookup_and_error() -> None:
    assert get_genotype("DARTS_V1") is PUBLISHED_GENOTYPES["DARTS_V1"]
    assert get_genotype("darts-v2") is PUBLISHED_GENOTYPES["DARTS_V2"]
    with pytest.raises(KeyError, match=r"'NASNet'.*DARTS_V1.*DARTS_V2"):
        get_genotype("NASNet")


# --------------------------------------------------------------------------- the type
def test_flat_and_nested_construction_are_equal_and_hashable() -> None:
    flat = Genotype([("a", 0), ("b", 1), ("c", 2), ("d", 0)], range(2, 4), [("e", 1), ("f", 0)], (2,))
    nested = Genotype([[("a", 0), ("b", 1)], [("c", 2), ("d", 0)]], [2, 3], [[["e", 1], ["f", 0]]], [2])
    assert flat == nested
    assert hash(flat) == hash(nested)
    assert len({flat, nested}) == 1
    assert flat.normal == ((("a", 0), ("b", 1)), (("c", 2), ("d", 0)))
    assert isinstance(flat.normal_concat, tuple) and flat.normal_concat == (2, 3)


def test_views() -> None:
    g = nested_genotype()
    assert g.steps == 3
    assert not g.is_flat
    cells = g.cells()
    assert set(cells) == {"normal", "reduce"}
    assert isinstance(cells["reduce"], CellView)
    nodes, concat = cells["reduce"]
    assert nodes == g.reduce and concat == (2, 3) and cells["reduce"].steps == 2
    assert g.op_names() == {"sep_conv_3x3", "sep_conv_5x5", "skip_connect", "max_pool_3x3", "dil_conv_3x3",
                            "avg_pool_3x3"}
    assert len(g.flat_edges("normal")) == 7
    with pytest.raises(ValueError, match="'middle'"):
        g.flat_edges("middle")


def test_frozen() -> None:
    g = get_genotype("DARTS")
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.normal = ()  # type: ignore[misc]


def test_odd_op_names_pickle_and_copy_round_trip() -> None:
    g = Genotype([[("it's", 0), ('mu"op', 1)], [("op # not a comment", 2)]], [2, 3], [[("a", 0)]], [2])
    assert Genotype.parse(str(g)) == g
    assert Genotype.from_json(g.to_json()) == g
    assert pickle.loads(pickle.dumps(g)) == g
    assert copy.deepcopy(g) == g


def test_nested_text_form_round_trips() -> None:
    g = nested_genotype()
    text = str(g)
    assert "normal=[[('sep_conv_3x3', 0), ('sep_conv_5x5', 1), ('skip_connect', 0)], " in text
    assert "[('avg_pool_3x3', 3)]]" in text
    assert Genotype.parse(text) == g
    assert Genotype.from_json(g.to_json()) == g


def test_single_edge_nodes_use_nested_form() -> None:
    g = Genotype([[("a", 0)]], [2], [[("b", 1)]], [2])
    assert g.normal == ((("a", 0),),)
    assert str(g) == "Genotype(normal=[[('a', 0)]], normal_concat=[2], reduce=[[('b', 1)]], reduce_concat=[2])"
    assert Genotype.parse(str(g)) == g
    with pytest.raises(ValueError, match="1 edge in flat form"):  # a lone flat edge is not a DARTS node
        Genotype([("a", 0)], [2], [("b", 1)], [2])


def test_parse_accepts_layout_variants() -> None:
    text = """
    genotypes.Genotype(
        normal=(('a', 0), ('b', 1),),
        normal_concat=(2,),
        reduce=[["c", 0], ["d", +1]],
        reduce_concat=range(2, 3),
    )
    """
    g = Genotype.parse(text)
    assert g == Genotype.parse(SMALL)
    positional = "Genotype([('a', 0), ('b', 1)], [2], [('c', 0), ('d', 1)], [2])"
    assert Genotype.parse(positional) == g


def test_json_form_is_nested_lists() -> None:
    data = json.loads(get_genotype("DARTS_V2").to_json())
    assert set(data) == {"normal", "normal_concat", "reduce", "reduce_concat"}
    assert data["normal"][0] == [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]]
    assert data["reduce_concat"] == [2, 3, 4, 5]


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"normal": [("a", 0), ("b", 2)]}, r"input index 2 out of range.*allowed 0\.\.1"),
        ({"normal": [("a", 0), ("b", 1), ("c", 4), ("d", 0)]}, r"input index 4 out of range.*allowed 0\.\.2"),
        ({"normal": [("a", -1), ("b", 1)]}, r"input index -1 out of range"),
        ({"normal": [("a", True), ("b", 1)]}, r"must be an int, got True"),
        ({"normal": [("a", 0.0), ("b", 1)]}, r"must be an int, got 0\.0"),
        ({"normal": [("", 0), ("b", 1)]}, r"non-empty str, got ''"),
        ({"normal": [(3, 0), ("b", 1)]}, r"non-empty str, got 3"),
        ({"normal": [[("a", 0)], []]}, r"node 1 \(index 3\) is empty"),
        ({"normal": []}, r"normal has no intermediate nodes"),
        ({"normal": "sep_conv_3x3"}, r"got str: 'sep_conv_3x3'"),
        ({"normal": [("a", 0), ("b", 1), ("c", 0)]}, r"3 edges in flat form"),
        ({"normal": [("a", 0), [("b", 1)]]}, r"mixes flat edges and nested nodes"),
        ({"normal": [[("a", 0, 1)]]}, r"expected \(op_name, input_index\), got \('a', 0, 1\)"),
        ({"normal_concat": [3]}, r"concat index 3 out of range; allowed 2\.\.2"),
        ({"reduce_concat": [-1]}, r"reduce_concat: concat index -1 out of range"),
        ({"reduce_concat": [3]}, r"concat index 3 out of range; allowed 2\.\.2 .* or 0\.\.1 \(the cell inputs"),
        ({"normal_combine": ["add", "add"]}, r"normal_combine has 2 entries but the cell has 1 nodes"),
        ({"normal_combine": ["mul"]}, r"normal_combine node 0: unknown combine method 'mul'; allowed \['add', 'concat'\]"),
        ({"reduce_combine": "concat"}, r"reduce_combine must be a list of one method per node.*got str: 'concat'"),
        ({"normal_concat": []}, r"normal_concat is empty"),
        ({"normal_concat": [2, 2]}, r"repeats a node index"),
        ({"normal_concat": ["2"]}, r"must be an int, got '2'"),
    ],
)
def test_validation_errors(kwargs: dict, pattern: str) -> None:
    args = {"normal": [("a", 0), ("b", 1)], "normal_concat": [2], "reduce": [("c", 0), ("d", 1)], "reduce_concat": [2]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        Genotype(**args)


def test_from_dict_key_errors() -> None:
    data = get_genotype("DARTS_V1").to_dict()
    del data["reduce_concat"]
    with pytest.raises(ValueError, match=r"missing \['reduce_concat'\]"):
        Genotype.from_dict(data)
    data = get_genotype("DARTS_V1").to_dict() | {"steps": 4}
    with pytest.raises(ValueError, match=r"unknown \['steps'\]"):
        Genotype.from_dict(data)
    with pytest.raises(ValueError, match="must be a mapping"):
        Genotype.from_dict([1, 2])  # type: ignore[arg-type]


def test_from_json_errors_quote_the_text() -> None:
    with pytest.raises(GenotypeParseError, match=re.escape('column 26: "oops}"')):
        Genotype.from_json('{"normal": [[["a", 0]]], oops}')
    with pytest.raises(ValueError, match="must be a mapping"):
        Genotype.from_json("[1, 2]")


# --------------------------------------------------------------------------- malformed text
def _swap(old: str, new: str) -> str:
    assert old in SMALL
    return SMALL.replace(old, new)


@pytest.mark.parametrize(
    "text, quoted, reason",
    [
        # unbalanced brackets
        ("Genotype(normal=[('a', 0), ('b', 1)", "[('a', 0), ('b', 1)", "never closed"),
        (_swap("('b', 1)]", "('b', 1)]]"), "], normal_concat=[2]", "does not match"),
        # missing / unknown / repeated keywords
        (_swap(", reduce_concat=[2]", ""), "Genotype(normal=[('a', 0), ('b', 1)]", r"missing keyword\(s\) \['reduce_concat'\]"),
        (_swap("reduce_concat=[2]", "reduce_concat=[2], steps=4"), "steps=4", "unknown keyword 'steps'"),
        (_swap("normal_concat=[2]", "normal_concat=[2], normal_concat=[2]"), "normal_concat=[2]", "given twice"),
        # wrong types
        (_swap("('a', 0)", "(a, 0)"), "a", "op name must be a string literal"),
        (_swap("('b', 1)", "('b', '1')"), "'1'", "input index must be an int literal"),
        (_swap("('b', 1)", "('b', 1.5)"), "1.5", "input index must be an int literal"),
        (_swap("('b', 1)", "('b', 1, 2)"), "('b', 1, 2)", "must be a pair"),
        (_swap("normal_concat=[2]", "normal_concat='2'"), "'2'", "must be a list of ints or range"),
        (_swap("normal_concat=[2]", "normal_concat=[x]"), "x", "concat index must be an int literal"),
        (_swap("normal=[('a', 0), ('b', 1)]", "normal='abc'"), "'abc'", "must be a list of edges or a list of nodes"),
        (_swap("normal=[('a', 0), ('b', 1)]", "normal=[('a', 0), [('b', 1)]]"), "[('b', 1)]", "mixes flat edges"),
        # odd number of flat edges
        (_swap("('b', 1)]", "('b', 1), ('e', 2)]"), "[('a', 0), ('b', 1), ('e', 2)]", "3 edges in flat form"),
        # out of range (pinned to the bad edge / concat)
        (_swap("('b', 1)", "('b', 7)"), "('b', 7)", "input index 7 out of range"),
        (_swap("('b', 1)", "('b', -1)"), "('b', -1)", "input index -1 out of range"),
        (_swap("reduce_concat=[2]", "reduce_concat=[5]"), "5", "concat index 5 out of range"),
        (_swap("normal_concat=[2]", "normal_concat=range(2, 9)"), "range(2, 9)", "concat index 3 out of range"),
        (_swap("normal_concat=[2]", "normal_concat=[2, 2]"), "[2, 2]", "repeats a node index"),
        (_swap("normal=[('a', 0), ('b', 1)]", "normal=[[]]"), "[]", "node 0 \\(index 2\\) is empty"),
        (_swap("('a', 0)", "('', 0)"), "('', 0)", "non-empty str"),
        # anything else: not a Genotype call, code, trailing text
        ("NASNet(normal=[])", "NASNet(normal=[])", "expected a call Genotype"),
        ("__import__('os').system('true')", "__import__('os').system('true')", "expected a call Genotype"),
        (SMALL + " + 1", "+ 1", "unexpected text around"),
        ("x = " + SMALL, "= Genotype(normal=", "malformed genotype text"),
        (_swap("normal_concat=[2]", "normal_concat=list(range(2, 3))"), "list(range(2, 3))", "list of ints or range"),
        (_swap("normal=[('a', 0), ('b', 1)]", "**extra"), "**extra", "'\\*\\*' arguments are not allowed"),
        # combine methods (optional keywords)
        (SMALL[:-1] + ", normal_combine=['mul'])", "'mul'", "unknown combine method 'mul'"),
        (SMALL[:-1] + ", normal_combine=[x])", "x", "combine method must be a string literal"),
        (SMALL[:-1] + ", reduce_combine='add')", "'add'", "must be a list of combine methods"),
        (SMALL[:-1] + ", reduce_combine=['add', 'add'])", "['add', 'add']", "2 entries but the cell has 1 nodes"),
    ],
)
def test_malformed_text_quotes_the_bad_part(text: str, quoted: str, reason: str) -> None:
    with pytest.raises(GenotypeParseError, match=reason) as info:
        Genotype.parse(text)
    message = str(info.value)
    assert f'"{quoted}' in message, message  # quoted from its first character (long parts are shortened)
    assert isinstance(info.value, ValueError)


def test_parse_never_evaluates(tmp_path: Path) -> None:
    marker = tmp_path / "evaluated"
    payload = f"open({str(marker)!r}, 'w').write('x')"
    for text in (payload, f"Genotype(normal=[({payload}, 0), ('b', 1)], normal_concat=[2], reduce=[], reduce_concat=[2])"):
        with pytest.raises(GenotypeParseError):
            Genotype.parse(text)
    assert not marker.exists()


def test_parse_rejects_empty_and_pathological_text() -> None:
    with pytest.raises(GenotypeParseError, match='empty genotype text: ""'):
        Genotype.parse("   ")
    with pytest.raises(GenotypeParseError, match=re.escape('"[[[[')):
        Genotype.parse("[" * 100_000)
    with pytest.raises(GenotypeParseError, match="must be a str"):
        Genotype.parse(None)  # type: ignore[arg-type]


def test_long_quotes_are_shortened() -> None:
    text = _swap(", reduce_concat=[2]", "")
    with pytest.raises(GenotypeParseError) as info:
        Genotype.parse(text)
    quoted = re.search(r'"(.*)"$', str(info.value))
    assert quoted is not None and quoted.group(1).endswith("...") and len(quoted.group(1)) <= 70


# --------------------------------------------------------------------------- files and specs
def test_save_formats_and_load(tmp_path: Path) -> None:
    g = nested_genotype()
    json_path = g.save(tmp_path / "deep" / "dir" / "cell.json")
    text_path = g.save(tmp_path / "cell.genotype")
    assert json_path.exists() and json.loads(json_path.read_text())["normal_concat"] == [2, 3, 4]
    assert text_path.read_text().startswith("Genotype(normal=[[(")
    assert Genotype.load(json_path) == g == Genotype.load(text_path)
    with pytest.raises(FileNotFoundError):
        Genotype.load(tmp_path / "missing.json")


def test_load_rejects_garbage_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("Genotype(normal=[('a', 0)], normal_concat=[2], reduce=[('b', 1)])")
    with pytest.raises(GenotypeParseError, match=r"missing keyword\(s\) \['reduce_concat'\]"):
        Genotype.load(bad)


def test_resolve_genotype_forms(tmp_path: Path) -> None:
    g = nested_genotype()
    assert resolve_genotype(g) is g
    assert resolve_genotype("DARTS") is PUBLISHED_GENOTYPES["DARTS_V2"]
    assert resolve_genotype(" darts_v1 ") is PUBLISHED_GENOTYPES["DARTS_V1"]
    path = g.save(tmp_path / "g.json")
    assert resolve_genotype(str(path)) == g
    assert resolve_genotype(path) == g
    assert resolve_genotype(str(g.save(tmp_path / "g.txt"))) == g
    assert resolve_genotype(str(g)) == g
    assert resolve_genotype(g.to_json()) == g


def test_resolve_genotype_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'DARTS_V3'.*DARTS_V1.*DARTS_V2.*Genotype\(.*JSON"):
        resolve_genotype("DARTS_V3")
    with pytest.raises(ValueError, match="cannot resolve"):
        resolve_genotype(str(tmp_path / "nope.json"))
    with pytest.raises(GenotypeParseError, match="never closed"):
        resolve_genotype("Genotype(normal=[")
    with pytest.raises(ValueError, match="must be a str"):
        resolve_genotype(42)  # type: ignore[arg-type]


def test_module_is_pure_python() -> None:
    """genotype.py must not pull in torch (it is used by light tools such as plotting and CLIs)."""
    tree = ast.parse(Path(genotype_module.__file__).read_text())
    imported = {
        (alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# --------------------------------------------------------------------------- NASNet extensions
def nasnet_style_genotype() -> Genotype:
    """Inputs in the concat lists (NASNet's unused states) and a concat-combined node."""
    return Genotype(
        normal=[("conv_1x1", 1), ("conv_3x3", 1), ("sep_conv_3x3", 2), ("skip_connect", 1)],
        normal_concat=[0, 3],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 0)],
        reduce_concat=[1, 2],
        normal_combine=["add", "concat"],
    )


def test_concat_may_list_the_cell_inputs() -> None:
    g = nasnet_style_genotype()
    assert g.normal_concat == (0, 3) and g.reduce_concat == (1, 2)
    text = str(g)
    assert "normal_concat=[0, 3]" in text and "reduce_concat=[1, 2]" in text
    assert Genotype.parse(text) == g
    assert Genotype.from_json(g.to_json()) == g


def test_combine_defaults_to_add_and_is_left_out_of_text_and_json() -> None:
    g = get_genotype("DARTS_V2")
    assert g.normal_combine == g.reduce_combine == ("add",) * 4 and g.all_add
    assert g.combine("reduce") == ("add",) * 4
    explicit = Genotype(g.normal, g.normal_concat, g.reduce, g.reduce_concat, ["add"] * 4, ("add",) * 4)
    assert explicit == g and hash(explicit) == hash(g)
    assert str(explicit) == DARTS_V2_TEXT
    assert set(explicit.to_dict()) == {"normal", "normal_concat", "reduce", "reduce_concat"}
    with pytest.raises(ValueError, match="'middle'"):
        g.combine("middle")


def test_combine_round_trips_only_where_not_all_add(tmp_path: Path) -> None:
    g = nasnet_style_genotype()
    assert g.normal_combine == ("add", "concat") and g.reduce_combine == ("add",) and not g.all_add
    text = str(g)
    assert text.endswith("reduce_concat=[1, 2], normal_combine=['add', 'concat'])")
    assert "reduce_combine" not in text
    data = g.to_dict()
    assert data["normal_combine"] == ["add", "concat"] and "reduce_combine" not in data
    assert Genotype.parse(text) == g
    assert Genotype.from_dict(data) == g
    assert Genotype.load(g.save(tmp_path / "g.json")) == g == Genotype.load(g.save(tmp_path / "g.txt"))
    assert resolve_genotype(text) == g
    positional = Genotype.parse(
        "Genotype([('a', 0), ('b', 1)], [2], [('c', 0), ('d', 1)], [2], ['concat'], ['add'])"
    )
    assert positional.normal_combine == ("concat",)
    assert g != Genotype(g.normal, g.normal_concat, g.reduce, g.reduce_concat)


def test_nasnet_a_is_published_with_the_reference_concat() -> None:
    g = get_genotype("nasnet-a")
    assert g is PUBLISHED_GENOTYPES["NASNet_A"]
    assert g.normal_concat == (0, 2, 3, 4, 5, 6)  # c_{k-2} plus all five blocks
    assert g.reduce_concat == (3, 4, 5, 6)
    assert "combine" not in str(g)
    assert g.flat_edges("normal")[:2] == (("sep_conv_5x5", 1), ("sep_conv_3x3", 0))
    assert g.flat_edges("reduce")[-2:] == (("sep_conv_3x3", 2), ("max_pool_3x3", 1))
