"""Tests for lit_automl.spaces.plot: the genotype picture is written, readable and laid out legibly."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from matplotlib import image as mpimg

from lit_automl.spaces import plot as plot_module
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.plot import plot_genotype, plot_nb201_cell
from lit_automl.spaces.published import get_genotype
from tests.spaces import genotype_cases

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def nested_genotype() -> Genotype:
    """Nodes with 3, 3 and 1 edges (normal) and 3, 1 edges (reduce), incl. two edges between one pair."""
    normal = genotype_cases.nested_genotype()
    reduce = [[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 1)], [("my_custom_op", 2)]]
    return Genotype(normal.normal, normal.normal_concat, reduce, [2, 3])


def _check_png(path: Path, min_width: int = 1000) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(path)
    height, width = pixels.shape[:2]
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert width >= min_width and 200 <= height < width  # two cells side by side: wider than tall
    assert pixels[..., :3].std() > 0.05  # something was drawn
    return width, height


def test_darts_v2_png(tmp_path: Path) -> None:
    out = plot_genotype(get_genotype("DARTS_V2"), tmp_path / "darts_v2.png", title="DARTS_V2")
    assert out == tmp_path / "darts_v2.png"
    _check_png(out, min_width=2000)


def test_nested_three_edge_genotype_png(tmp_path: Path) -> None:
    out = plot_genotype(nested_genotype(), tmp_path / "nested.png")
    _check_png(out)


def test_many_nodes_and_dense_edges(tmp_path: Path) -> None:
    # SNAS-style: every node reads every earlier index; 6 nodes.
    dense = [[(f"op{(i + j) % 5}", j) for j in range(i + 2)] for i in range(6)]
    g = Genotype(dense, range(2, 8), [[("skip_connect", 0)]], [2])
    _check_png(plot_genotype(g, tmp_path / "dense.png"))


def test_title_adds_room_and_spec_strings_work(tmp_path: Path) -> None:
    _, plain = _check_png(plot_genotype("DARTS_V1", tmp_path / "plain.png"))
    _, titled = _check_png(plot_genotype("DARTS_V1", tmp_path / "titled.png", title="first order"))
    assert titled > plain


def test_missing_parent_folders_are_created_and_suffix_added(tmp_path: Path) -> None:
    out = plot_genotype("DARTS", tmp_path / "a" / "b" / "cell")
    assert out == tmp_path / "a" / "b" / "cell.png"
    _check_png(out)


def test_other_formats(tmp_path: Path) -> None:
    svg = plot_genotype("DARTS", tmp_path / "cell.svg")
    assert b"<svg" in svg.read_bytes()[:2000]
    pdf = plot_genotype("DARTS", tmp_path / "cell.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_bad_paths_raise_clear_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="parent path is a file"):
        plot_genotype("DARTS", blocker / "cell.png")
    with pytest.raises(ValueError, match=r"'\.gif'.*\.png"):
        plot_genotype("DARTS", tmp_path / "cell.gif")
    with pytest.raises(ValueError, match="cannot resolve genotype spec"):
        plot_genotype("NOT_A_GENOTYPE", tmp_path / "cell.png")


# --------------------------------------------------------------------------- layout legibility
@pytest.mark.parametrize("genotype", [get_genotype("DARTS_V2"), get_genotype("DARTS_V1"), nested_genotype()])
def test_layout_keeps_edges_off_nodes_and_labels_apart(genotype: Genotype) -> None:
    for view in genotype.cells().values():
        pos = plot_module._layout(view.nodes)
        assert len(pos) == view.steps + 3  # 2 inputs, the nodes, 1 output
        assert len(set(pos.values())) == len(pos)  # no two nodes on one spot
        edges = plot_module._route(view.nodes, view.concat, pos)
        assert sum(e.op is not None for e in edges) == sum(len(node) for node in view.nodes)
        assert sum(e.op is None for e in edges) == len(view.concat)
        for e in edges:  # no edge runs through a node it does not touch
            curve = plot_module._bezier(pos[e.src], pos[e.dst], e.rad, 60)
            for k, (x, y) in pos.items():
                if k not in (e.src, e.dst):
                    assert min(math.hypot(px - x, py - y) for px, py in curve) > plot_module._RADIUS
        pairs = [(e.src, e.dst, e.rad) for e in edges]
        assert len(set(pairs)) == len(pairs)  # parallel edges get different bends
        plot_module._place_labels(edges, pos)
        boxes = []
        for e in edges:
            if e.op is None:
                continue
            (x, y), (w, h) = e.label_xy, e.label_wh
            boxes.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        for a, b in itertools.combinations(boxes, 2):
            assert plot_module._overlap(a, b) == 0.0


def test_one_colour_per_op() -> None:
    g = nested_genotype()
    colors = plot_module._op_colors(g)
    assert set(colors) == g.op_names()
    assert len(set(map(str, colors.values()))) == len(colors)
    # DARTS ops keep their colour from one figure to the next
    assert colors["sep_conv_3x3"] == plot_module._op_colors(get_genotype("DARTS_V2"))["sep_conv_3x3"]


def test_an_nb201_cell_is_drawn_with_its_six_edges_and_none_in_grey(tmp_path, monkeypatch):
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|"
    drawn = []
    original = plot_module._trimmed
    monkeypatch.setattr(plot_module, "_trimmed", lambda p0, p2, rad, gap: drawn.append((p0, p2)) or original(p0, p2, rad, gap))
    path = plot_nb201_cell(arch, tmp_path / "cell", title="best")
    assert path == tmp_path / "cell.png"
    image = mpimg.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 2 * image.shape[0]  # a wide left-to-right drawing
    xs = sorted({round(p[0], 6) for pair in drawn for p in pair})
    assert len(drawn) == 6 and len(xs) == 4  # one arrow per edge between the four nodes
    with pytest.raises(ValueError, match="NB201Arch or its arch string"):
        plot_nb201_cell(42, tmp_path / "x.png")
