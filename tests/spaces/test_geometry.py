"""lit_automl.spaces.geometry: the one description of the DARTS cell layout."""

import pytest

from lit_automl.spaces.geometry import (
    CELL_TYPES,
    edge_endpoints,
    edge_sources,
    node_edge_slices,
    num_search_edges,
    output_concat,
)


@pytest.mark.parametrize("steps", [1, 2, 4, 5])
def test_layout_is_node_major_with_i_plus_2_inputs(steps):
    slices = node_edge_slices(steps)
    assert [s.stop - s.start for s in slices] == [i + 2 for i in range(steps)]
    assert slices[0].start == 0 and slices[-1].stop == num_search_edges(steps)
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    sources = edge_sources(steps)
    assert len(sources) == num_search_edges(steps)
    for i, s in enumerate(slices):
        assert sources[s] == list(range(i + 2))
        assert edge_endpoints(steps)[s] == [(j, i + 2) for j in range(i + 2)]


def test_published_counts_and_concat():
    assert num_search_edges(4) == 14  # the DARTS cell (Liu et al. 2019, Sec. 2.1)
    assert edge_sources(2) == [0, 1, 0, 1, 2]
    assert output_concat(4, 4) == [2, 3, 4, 5]
    assert output_concat(5, 3) == [4, 5, 6]
    assert CELL_TYPES == ("normal", "reduce")
