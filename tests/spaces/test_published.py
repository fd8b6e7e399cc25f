"""Tests for lit_automl.spaces.published: the published cells, lookup by name, genotype specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_automl.spaces.genotype import Genotype, GenotypeParseError
from lit_automl.spaces.published import PUBLISHED_GENOTYPES, get_genotype, resolve_genotype
from tests.spaces.genotype_cases import DARTS_V1_TEXT, DARTS_V2_TEXT, nested_genotype


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
        assert g.steps == (5 if name in ("NASNet_A", "ENAS", "AmoebaNet_A", "PNASNet_5") else 4)  # B = 5 per cell for these


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



def test_nasnet_a_is_published_with_the_reference_concat() -> None:
    g = get_genotype("nasnet-a")
    assert g is PUBLISHED_GENOTYPES["NASNet_A"]
    assert g.normal_concat == (0, 2, 3, 4, 5, 6)  # c_{k-2} plus all five blocks
    assert g.reduce_concat == (3, 4, 5, 6)
    assert "combine" not in str(g)
    assert g.flat_edges("normal")[:2] == (("sep_conv_5x5", 1), ("sep_conv_3x3", 0))
    assert g.flat_edges("reduce")[-2:] == (("sep_conv_3x3", 2), ("max_pool_3x3", 1))



# The DARTS repositories' text form of AmoebaNet (quark0/darts cnn/genotypes.py), line breaks and all.
AMOEBANET_TEXT = """Genotype(
  normal = [
    ('avg_pool_3x3', 0),
    ('max_pool_3x3', 1),
    ('sep_conv_3x3', 0),
    ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 0),
    ('avg_pool_3x3', 3),
    ('sep_conv_3x3', 1),
    ('skip_connect', 1),
    ('skip_connect', 0),
    ('avg_pool_3x3', 1),
    ],
  normal_concat = [4, 5, 6],
  reduce = [
    ('avg_pool_3x3', 0),
    ('sep_conv_3x3', 1),
    ('max_pool_3x3', 0),
    ('sep_conv_7x7', 2),
    ('sep_conv_7x7', 0),
    ('avg_pool_3x3', 1),
    ('max_pool_3x3', 0),
    ('max_pool_3x3', 1),
    ('conv_7x1_1x7', 0),
    ('sep_conv_3x3', 5),
  ],
  reduce_concat = [3, 4, 6]
)"""


def test_amoebanet_a_is_published_as_the_darts_repositories_list_it_and_builds_at_the_papers_size() -> None:
    import torch

    from lit_automl.spaces.networks import NetworkCIFAR, count_parameters

    g = get_genotype("AmoebaNet_A")
    assert Genotype.parse(AMOEBANET_TEXT) == g
    assert len(g.normal) == 5 and g.normal_concat == (4, 5, 6) and g.reduce_concat == (3, 4, 6)
    net = NetworkCIFAR(g, C=36, num_classes=10, layers=20, auxiliary=False)  # N=6 -> 3N + 2 cells, F=36
    n = count_parameters(net)
    # Real et al. 2019, Table 1: AmoebaNet-A (N=6, F=36) 3.2M; on this library's (DARTS's) network: 3,145,078
    assert n == 3_145_078 and abs(n - 3.2e6) / 3.2e6 < 0.02
    net.eval()
    assert net(torch.randn(2, 3, 32, 32))[0].shape == (2, 10)


# The DARTS repositories' text form of PNASNet (quark0/darts cnn/genotypes.py "PNASNet"), one line per edge.
PNASNET_EDGES = """('sep_conv_5x5', 0), ('max_pool_3x3', 0), ('sep_conv_7x7', 1), ('max_pool_3x3', 1),
    ('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 4), ('max_pool_3x3', 1),
    ('sep_conv_3x3', 0), ('skip_connect', 1)"""
PNASNET_TEXT = (f"Genotype(normal=[{PNASNET_EDGES}], normal_concat=[2, 3, 4, 5, 6], "
                f"reduce=[{PNASNET_EDGES}], reduce_concat=[2, 3, 4, 5, 6])")


def test_pnasnet_5_is_published_as_the_darts_repositories_list_it_and_builds_at_the_papers_size() -> None:
    import torch

    from lit_automl.spaces.networks import NetworkCIFAR, count_parameters

    g = get_genotype("pnasnet-5")
    assert g is PUBLISHED_GENOTYPES["PNASNet_5"] and Genotype.parse(PNASNET_TEXT) == g
    assert g.normal == g.reduce and g.normal_concat == g.reduce_concat == (2, 3, 4, 5, 6)
    # Liu et al. 2018, Table 1: PNASNet-5 (N=3, F=48) 3.2M. PNASNet stacks 3N cells, two of them strided
    # (TF pnasnet.py), i.e. this library's (DARTS's) network with layers=9: 3,176,602
    net = NetworkCIFAR(g, C=48, num_classes=10, layers=9, auxiliary=False)
    n = count_parameters(net)
    assert n == 3_176_602 and abs(n - 3.2e6) / 3.2e6 < 0.01
    net.eval()
    assert net(torch.randn(2, 3, 32, 32))[0].shape == (2, 10)
