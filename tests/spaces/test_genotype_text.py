"""Tests for lit_automl.spaces.genotype_text: reading the published text form, errors quoting the bad part."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lit_automl.spaces.genotype import Genotype, GenotypeParseError
from tests.spaces.genotype_cases import SMALL, fake_op_names, nested_genotype  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("fake_op_names")


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

