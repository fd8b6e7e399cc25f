"""Draw a :class:`~lit_automl.spaces.genotype.Genotype` as a picture.

The normal and the reduction cell are drawn side by side as left-to-right DAGs,
in the style of the cell figures of DARTS (Liu et al., ICLR 2019): the inputs
``c_{k-2}``, ``c_{k-1}`` on the left, the intermediate nodes ``0..n-1`` in
columns by depth, the output ``c_{k}`` on the right.  Every edge is an arrow
labelled with its op name (one colour per op name); dashed grey arrows show
which nodes are concatenated into the output.

Only matplotlib's object-oriented API with the Agg canvas is used: no pyplot, no
global backend switch, no graphviz, so plotting is safe on headless machines and
does not disturb an interactive session.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from lit_automl.spaces.genotype import CellNodes, Genotype
from lit_automl.spaces.geometry import node_state, num_states
from lit_automl.spaces.published import resolve_genotype

if TYPE_CHECKING:
    from lit_automl.spaces.nb201 import NB201Arch

__all__ = ["plot_genotype", "plot_nb201_cell"]

# Geometry in data units; the figure keeps one unit = _INCH inches on both axes so
# arcs computed here coincide with the ones matplotlib draws.
_COL = 3.6  # distance between depth columns
_ROW = 1.8  # distance between nodes of one column
_RADIUS = 0.36  # node circle radius
_INCH = 0.8  # inches per data unit
_LABEL_PT = 8.5  # op label font size
_NODE_PT = 11.0
_RADS = (0.0, 0.18, -0.18, 0.32, -0.32, 0.48, -0.48, 0.65, -0.65)
_LABEL_TS = (0.5, 0.42, 0.58, 0.34, 0.66, 0.27, 0.73, 0.2, 0.8)
_INPUT_COLOR = "#b3d4ec"
_NODE_COLOR = "#fbeeb0"
_OUTPUT_COLOR = "#bfe3a8"
_CONCAT_COLOR = "#8c8c8c"
_MIN_ANGLE = math.radians(16)  # edges sharing an end node should differ at least this much in direction
_FORMATS = (".png", ".pdf", ".svg")

Point = tuple[float, float]


@dataclass
class _Edge:
    src: int
    dst: int
    op: str | None  # None for the dashed concat edges into the output
    rad: float = 0.0
    label_xy: Point | None = None
    label_wh: Point = (0.0, 0.0)


def _control(p0: Point, p2: Point, rad: float) -> Point:
    """Control point of matplotlib's ``arc3`` connection (a quadratic Bezier) from p0 to p2."""
    (x0, y0), (x2, y2) = p0, p2
    return (x0 + x2) / 2 + rad * (y2 - y0), (y0 + y2) / 2 - rad * (x2 - x0)


def _point_at(p0: Point, p2: Point, rad: float, t: float) -> Point:
    """The point at parameter ``t`` in [0, 1] on the arc3 curve from p0 to p2."""
    cx, cy = _control(p0, p2, rad)
    a, b, c = (1 - t) ** 2, 2 * t * (1 - t), t * t
    return (a * p0[0] + b * cx + c * p2[0], a * p0[1] + b * cy + c * p2[1])


def _bezier(p0: Point, p2: Point, rad: float, n: int = 24) -> list[Point]:
    """``n + 1`` evenly spaced (in t) points on the arc3 curve from p0 to p2."""
    return [_point_at(p0, p2, rad, i / n) for i in range(n + 1)]


def _end_directions(p0: Point, p2: Point, rad: float) -> tuple[float, float]:
    """Angles (radians) at which the arc3 curve leaves p0 and enters p2."""
    cx, cy = _control(p0, p2, rad)
    return math.atan2(cy - p0[1], cx - p0[0]), math.atan2(p2[1] - cy, p2[0] - cx)


def _trimmed(p0: Point, p2: Point, rad: float, gap: float) -> tuple[Point, Point, Point]:
    """The arc3 curve from p0 to p2 cut where it leaves / enters the node circles.

    Returns (start, control, end) of the remaining quadratic Bezier, so the arrow can be
    drawn as a plain path (much faster than letting matplotlib clip against patches).
    """
    limit = _RADIUS + gap

    def crossing(centre: Point, lo: float, hi: float, inside_at_lo: bool) -> float:
        for _ in range(30):  # bisection on the distance to the circle
            mid = (lo + hi) / 2
            x, y = _point_at(p0, p2, rad, mid)
            inside = math.hypot(x - centre[0], y - centre[1]) < limit
            if inside == inside_at_lo:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    t0 = crossing(p0, 0.0, 0.5, True)
    t1 = crossing(p2, 0.5, 1.0, False)
    cx, cy = _control(p0, p2, rad)
    start, end = _point_at(p0, p2, rad, t0), _point_at(p0, p2, rad, t1)
    # Tangent at t0 (derivative / 2); the sub-curve's control point lies along it.
    tx = (1 - t0) * (cx - p0[0]) + t0 * (p2[0] - cx)
    ty = (1 - t0) * (cy - p0[1]) + t0 * (p2[1] - cy)
    control = (start[0] + (t1 - t0) * tx, start[1] + (t1 - t0) * ty)
    return start, control, end


def _layout(nodes: CellNodes) -> dict[int, Point]:
    """Node positions: 0, 1 = inputs, 2..n+1 = intermediate nodes, n+2 = output; columns by depth."""
    sources = {node_state(i): [src for _, src in node] for i, node in enumerate(nodes)}
    rank = {0: 0, 1: 0}
    for k, srcs in sources.items():
        rank[k] = 1 + max(rank[src] for src in srcs)
    out = num_states(len(nodes))
    rank[out] = max(rank.values()) + 1
    pos: dict[int, Point] = {}
    for r in range(rank[out] + 1):
        members = [k for k in sorted(rank) if rank[k] == r]
        if r > 0 and len(members) > 1:  # order a column by the mean height of its sources (fewer crossings)
            def barycentre(k: int) -> float:
                srcs = sources.get(k, [])
                ys = [pos[s][1] for s in srcs if s in pos]
                return -sum(ys) / len(ys) if ys else 0.0

            members.sort(key=lambda k: (barycentre(k), k))
        top = (len(members) - 1) * _ROW / 2
        for j, k in enumerate(members):
            pos[k] = (r * _COL, top - j * _ROW)
    return pos


def _text_size(text: str, size: float) -> Point:
    """Width and height of ``text`` in data units (measured from its glyph outline, no renderer needed)."""
    from matplotlib.textpath import TextPath

    ext = TextPath((0, 0), text, size=size).get_extents()
    return ext.width / 72 / _INCH, size * 1.15 / 72 / _INCH


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Overlap area of two boxes given as (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _route(nodes: CellNodes, concat: tuple[int, ...], pos: dict[int, Point]) -> list[_Edge]:
    """Every edge of the cell with an arc bend (``rad``) that keeps it off the other nodes."""
    out = num_states(len(nodes))
    edges = [_Edge(src, node_state(i), op) for i, node in enumerate(nodes) for op, src in node]
    edges += [_Edge(c, out, None) for c in concat]
    used: list[tuple[int, int, float]] = []
    leaving: dict[int, list[float]] = {}  # directions (radians) already used at each node, outgoing
    arriving: dict[int, list[float]] = {}  # ... and incoming
    clear = _RADIUS + 0.3
    for e in edges:
        best, best_cost = 0.0, math.inf
        best_dirs = (0.0, 0.0)
        for rad in _RADS:
            pts = _bezier(pos[e.src], pos[e.dst], rad)
            out_dir, in_dir = _end_directions(pos[e.src], pos[e.dst], rad)
            cost = abs(rad) * 0.6
            # Edges leaving (or entering) one node at nearly the same angle are hard to tell apart.
            for a, taken in ((out_dir, leaving.get(e.src, [])), (in_dir, arriving.get(e.dst, []))):
                for b in taken:
                    diff = abs((a - b + math.pi) % (2 * math.pi) - math.pi)
                    if diff < _MIN_ANGLE:
                        cost += 3 * (_MIN_ANGLE - diff) / _MIN_ANGLE
            for k, (x, y) in pos.items():
                if k in (e.src, e.dst):
                    continue
                d = min(math.hypot(px - x, py - y) for px, py in pts)
                if d < clear:
                    cost += 10 * (clear - d) + 2
            if any(u == (e.src, e.dst, rad) for u in used):  # parallel edges must not coincide
                cost += 100
            if cost < best_cost:
                best, best_cost, best_dirs = rad, cost, (out_dir, in_dir)
        e.rad = best
        used.append((e.src, e.dst, best))
        leaving.setdefault(e.src, []).append(best_dirs[0])
        arriving.setdefault(e.dst, []).append(best_dirs[1])
    return edges


def _place_labels(edges: list[_Edge], pos: dict[int, Point]) -> None:
    """Put each op label on its own edge where it overlaps the fewest nodes, labels and other edges."""
    node_boxes = [(x - _RADIUS, y - _RADIUS, x + _RADIUS, y + _RADIUS) for x, y in pos.values()]
    curves = {id(e): _bezier(pos[e.src], pos[e.dst], e.rad, 40) for e in edges}
    placed: list[tuple[float, float, float, float]] = []
    pad = 0.06
    for e in edges:
        if e.op is None:
            continue
        w, h = _text_size(e.op, _LABEL_PT)
        w, h = w + 2 * pad, h + 2 * pad
        best: tuple[float, Point] | None = None
        for rank, t in enumerate(_LABEL_TS):
            x, y = _point_at(pos[e.src], pos[e.dst], e.rad, t)
            box = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
            cost = 0.01 * rank
            cost += 50 * sum(_overlap(box, b) for b in placed)
            cost += 50 * sum(_overlap(box, b) for b in node_boxes)
            for other in edges:
                if other is not e:
                    hits = sum(box[0] <= px <= box[2] and box[1] <= py <= box[3] for px, py in curves[id(other)])
                    cost += 0.25 * hits
            if best is None or cost < best[0]:
                best = (cost, (x, y))
        assert best is not None
        e.label_xy, e.label_wh = best[1], (w, h)
        cx, cy = best[1]
        placed.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))


def _extent(edges: list[_Edge], pos: dict[int, Point]) -> tuple[float, float, float, float]:
    xs, ys = [], []
    for x, y in pos.values():
        xs += [x - _RADIUS, x + _RADIUS]
        ys += [y - _RADIUS, y + _RADIUS]
    for e in edges:
        for px, py in _bezier(pos[e.src], pos[e.dst], e.rad):
            xs.append(px)
            ys.append(py)
        if e.label_xy is not None:
            (x, y), (w, h) = e.label_xy, e.label_wh
            xs += [x - w / 2, x + w / 2]
            ys += [y - h / 2, y + h / 2]
    m = 0.25
    return min(xs) - m, min(ys) - m, max(xs) + m, max(ys) + m


# Fixed colours for the DARTS primitives, so one op looks the same in every figure;
# all dark enough to read as text on white.
_KNOWN_OP_COLORS = {
    "sep_conv_3x3": "#1f77b4",
    "sep_conv_5x5": "#7b4fb0",
    "dil_conv_3x3": "#2a9a2a",
    "dil_conv_5x5": "#0f8585",
    "max_pool_3x3": "#dd6a00",
    "avg_pool_3x3": "#8c564b",
    "skip_connect": "#d62728",
    "none": "#7a7a00",
}
_SPARE_COLORS = (
    "#c2185b", "#3949ab", "#00897b", "#6d4c41", "#5d7f00", "#ad1457", "#283593", "#bf360c",
    "#00695c", "#4e342e", "#1565c0", "#6a1b9a",
)


def _op_colors(genotype: Genotype) -> dict[str, object]:
    """One distinct colour per op name, the same in both cells (and for DARTS ops, in every figure)."""
    return _colors_of(genotype.op_names())


def _colors_of(op_names: "set[str] | list[str] | tuple[str, ...]") -> dict[str, object]:
    """One distinct colour per op name (the known ops' fixed colours first)."""
    from matplotlib import colormaps

    ops = sorted(set(op_names))
    colors: dict[str, object] = {op: _KNOWN_OP_COLORS[op] for op in ops if op in _KNOWN_OP_COLORS}
    others = [op for op in ops if op not in colors]
    for i, op in enumerate(others):
        colors[op] = _SPARE_COLORS[i] if i < len(_SPARE_COLORS) else colormaps["hsv"](i / len(others))
    return colors


def _resolve_path(path: Union[str, os.PathLike]) -> Path:
    path = Path(path).expanduser()
    if path.suffix == "":
        path = path.with_suffix(".png")
    if path.suffix.lower() not in _FORMATS:
        raise ValueError(f"cannot save a genotype plot as {path.suffix!r} ({path}); use one of {list(_FORMATS)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise NotADirectoryError(
            f"cannot create the folder for genotype plot {str(path)!r}: a parent path is a file ({exc})"
        ) from None
    return path


def plot_genotype(
    genotype: Union[Genotype, str],
    path: Union[str, os.PathLike],
    title: str | None = None,
) -> Path:
    """Draw the normal and the reduction cell of ``genotype`` side by side and save the picture.

    ``genotype`` may be a :class:`Genotype` or anything :func:`resolve_genotype` accepts
    (e.g. ``"DARTS_V2"``).  ``path`` gets ``.png`` appended when it has no suffix;
    ``.png`` (150 dpi), ``.pdf`` and ``.svg`` are written, missing parent folders are
    created.  Works for any number of nodes and of edges per node.  Returns the path
    written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, FancyArrowPatch
    from matplotlib.path import Path as MplPath

    genotype = resolve_genotype(genotype)
    path = _resolve_path(path)
    colors = _op_colors(genotype)

    panels = []
    for name, view in genotype.cells().items():
        pos = _layout(view.nodes)
        edges = _route(view.nodes, view.concat, pos)
        _place_labels(edges, pos)
        panels.append((name, view, pos, edges, _extent(edges, pos)))

    # Figure geometry in inches, keeping one data unit = _INCH inches on both axes.
    height_u = max(ext[3] - ext[1] for *_, ext in panels)
    widths_u = [ext[2] - ext[0] for *_, ext in panels]
    side, gap, bottom = 0.3, 0.5, 0.2
    top = 0.5 + (0.45 if title else 0.0)
    fig_w = 2 * side + gap * (len(panels) - 1) + sum(widths_u) * _INCH
    fig_h = bottom + top + height_u * _INCH
    fig = Figure(figsize=(fig_w, fig_h))
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontsize=14, y=1 - 0.3 / fig_h, va="center")

    x_in = side
    for (name, view, pos, edges, ext), w_u in zip(panels, widths_u):
        ax = fig.add_axes((x_in / fig_w, bottom / fig_h, w_u * _INCH / fig_w, height_u * _INCH / fig_h))
        x_in += w_u * _INCH + gap
        ax.set_xlim(ext[0], ext[2])
        y_mid = (ext[1] + ext[3]) / 2
        ax.set_ylim(y_mid - height_u / 2, y_mid + height_u / 2)
        ax.set_axis_off()
        kind = "normal cell" if name == "normal" else "reduction cell"
        ax.set_title(f"{kind} ({view.steps} nodes)", fontsize=12, pad=4)

        n = view.steps
        for k, (x, y) in pos.items():
            if k < 2:
                face, text = _INPUT_COLOR, ("$c_{k-2}$" if k == 0 else "$c_{k-1}$")
            elif k == num_states(n):
                face, text = _OUTPUT_COLOR, "$c_{k}$"
            else:
                face, text = _NODE_COLOR, str(k - node_state(0))
            circle = Circle((x, y), _RADIUS, facecolor=face, edgecolor="#333333", linewidth=1.2, zorder=3)
            ax.add_patch(circle)
            ax.text(x, y, text, ha="center", va="center", fontsize=_NODE_PT, zorder=4)

        for e in edges:
            concat_edge = e.op is None
            color = _CONCAT_COLOR if concat_edge else colors[e.op]
            start, control, end = _trimmed(pos[e.src], pos[e.dst], e.rad, gap=0.03)
            ax.add_patch(
                FancyArrowPatch(
                    path=MplPath([start, control, end], [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3]),
                    arrowstyle="-|>",
                    mutation_scale=13,
                    shrinkA=0,
                    shrinkB=0,
                    color=color,
                    linewidth=1.1 if concat_edge else 1.6,
                    linestyle="--" if concat_edge else "-",
                    zorder=1 if concat_edge else 2,
                )
            )
        for e in edges:
            if e.op is None or e.label_xy is None:
                continue
            ax.text(
                *e.label_xy,
                e.op,
                ha="center",
                va="center",
                fontsize=_LABEL_PT,
                color=colors[e.op],
                fontweight="bold",
                zorder=5,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor=colors[e.op], linewidth=0.8, alpha=0.95),
            )

    fmt = path.suffix.lower().lstrip(".")
    fig.savefig(path, format=fmt, dpi=150, facecolor="white")
    fig.clear()  # not registered with pyplot, so nothing else keeps it alive
    return path


def plot_nb201_cell(arch: "NB201Arch | str", path: Union[str, os.PathLike], title: str | None = None) -> Path:
    """Draw a NAS-Bench-201 cell (Dong & Yang, ICLR 2020, Fig. 1): nodes 0 (input) to 3 (output) left to
    right, every edge ``j -> i`` an arrow labelled with its op (``none`` dotted grey: the edge carries
    zeros). ``arch`` is an :class:`~lit_automl.spaces.nb201.NB201Arch` or its arch string; ``path`` as
    :func:`plot_genotype`. Returns the path written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, FancyArrowPatch
    from matplotlib.path import Path as MplPath

    from lit_automl.spaces.nb201 import NB201_EDGES, NB201Arch

    arch = NB201Arch.parse(arch) if isinstance(arch, str) else arch
    if not isinstance(arch, NB201Arch):
        raise ValueError(f"arch must be an NB201Arch or its arch string, got {type(arch).__name__}: {arch!r}")
    path = _resolve_path(path)
    colors = _colors_of([op for op in arch.ops if op != "none"])
    pos = {k: (k * _COL, 0.0) for k in range(4)}
    # neighbours straight; 0 -> 2 arcs above, 1 -> 3 below and 0 -> 3 around it, so no two edges cross
    rads = {(0, 2): -0.4, (1, 3): 0.4, (0, 3): 0.55}
    x_lim, y_lim = (-0.8, 3 * _COL + 0.8), (-3.4, 2.0)
    head = 0.45 if title else 0.0
    width, height = (x_lim[1] - x_lim[0]) * _INCH, (y_lim[1] - y_lim[0]) * _INCH
    fig = Figure(figsize=(width, height + head))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + head)))
    ax.set_xlim(*x_lim)
    ax.set_ylim(*y_lim)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=12)
    for k, (x, y) in pos.items():
        face = _INPUT_COLOR if k == 0 else _OUTPUT_COLOR if k == 3 else _NODE_COLOR
        ax.add_patch(Circle((x, y), _RADIUS, facecolor=face, edgecolor="#333333", linewidth=1.2, zorder=3))
        ax.text(x, y, str(k), ha="center", va="center", fontsize=_NODE_PT, zorder=4)
    for (src, dst), op in zip(NB201_EDGES, arch.ops):
        rad = rads.get((src, dst), 0.0)
        start, control, end = _trimmed(pos[src], pos[dst], rad, gap=0.03)
        none = op == "none"
        color = _CONCAT_COLOR if none else colors[op]
        ax.add_patch(FancyArrowPatch(
            path=MplPath([start, control, end], [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3]),
            arrowstyle="-|>", mutation_scale=13, shrinkA=0, shrinkB=0, color=color,
            linewidth=1.0 if none else 1.6, linestyle=":" if none else "-", zorder=1 if none else 2))
        ax.text(*_point_at(pos[src], pos[dst], rad, 0.5), op, ha="center", va="center", fontsize=_LABEL_PT,
                color=color, fontweight="normal" if none else "bold", zorder=5,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor=color, linewidth=0.8, alpha=0.95))
    fmt = path.suffix.lower().lstrip(".")
    fig.savefig(path, format=fmt, dpi=150, facecolor="white")
    fig.clear()
    return path
