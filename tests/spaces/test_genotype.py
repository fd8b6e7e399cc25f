"""Tests for lit_automl.spaces.genotype: the type, its validation, JSON and files."""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib.util
import json
import pickle
import re
import sys
from pathlib import Path

import pytest

from lit_automl.spaces import genotype as genotype_module
from lit_automl.spaces.genotype import CellView, Genotype, GenotypeParseError
from lit_automl.spaces.published import get_genotype, resolve_genotype
from tests.spaces.genotype_cases import DARTS_V2_TEXT, fake_op_names, nested_genotype  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("fake_op_names")


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



def test_module_is_pure_python() -> None:
    """genotype.py must not pull in torch (it is used by light tools such as plotting and CLIs): it and
    the library modules it imports (the text reader, the cell geometry, the argument checks) import
    nothing but the standard library."""
    seen, todo = set(), [genotype_module.__name__]
    while todo:
        name = todo.pop()
        seen.add(name)
        tree = ast.parse(Path(importlib.util.find_spec(name).origin).read_text())
        modules = {
            alias.name if isinstance(node, ast.Import) else node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
        ours = {m for m in modules if m.split(".")[0] == "lit_automl"}
        imported = {m.split(".")[0] for m in modules - ours}
        assert imported <= set(sys.stdlib_module_names) | {"__future__"}, (name, imported)
        todo += sorted(ours - seen)


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

