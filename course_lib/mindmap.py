"""Graphviz mind maps: the course concept map, and the machinery for every other map.

A :class:`MindMap` is a small builder on top of the ``graphviz`` package. Nodes have a *kind*
(``stage``, ``concept``, ``product``, ``reason``...) and the kind alone picks their style from
:data:`NODE_STYLES`, so every map in the course reads the same way. Readability is built in:
labels are wrapped and escaped, a node shows at most ``max_children`` children (the rest become
one "+N more" node), the whole map at most ``max_nodes`` nodes, and a legend shows each kind used.
The DOT source is deterministic: the same calls give the same ``.source``::

    m = MindMap()
    m.add_node("q", "running shoes", kind="query")
    m.add_child("q", "p1", "Trail runner X", kind="product", weight=0.8)
    m                                  # displays itself in Jupyter / Colab
    render(m, "build/why", formats=("svg", "png"))

Later maps add kinds with :func:`register_kind` (or a map's own ``styles=``). ``to_svg(m)`` and
``to_png_bytes(m)`` draw in memory. The course's own maps live in :mod:`course_lib.maps` and
:mod:`course_lib.innovation`.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import graphviz

__all__ = [
    "NODE_STYLES", "EDGE_STYLES", "EDGE_MEANING", "COURSE_STAGES", "COURSE_TITLE",
    "INSTALL_HINT",
    "MindMap", "GraphvizNotInstalled", "register_kind", "dot_available",
    "render", "to_bytes", "to_svg", "to_png_bytes", "display_map", "course_concept_map",
]

# One style table: the kind of a node decides how it looks. Extend it with register_kind().
NODE_STYLES: dict[str, dict[str, str]] = {
    "root": {"shape": "box", "style": "rounded,filled,bold", "fillcolor": "#1f3b73",
             "color": "#1f3b73", "fontcolor": "white", "fontsize": "16"},
    "stage": {"shape": "box", "style": "rounded,filled", "fillcolor": "#dbe8f8",
              "color": "#3b6fb6", "fontsize": "13"},
    "topic": {"shape": "box", "style": "rounded,filled", "fillcolor": "#e3f1e8",
              "color": "#3c8d5a"},
    "concept": {"shape": "box", "style": "rounded,filled", "fillcolor": "#fff6d6",
                "color": "#b58b00"},
    "tool": {"shape": "component", "style": "filled", "fillcolor": "#eee6f6",
             "color": "#7a4fa3"},
    "user": {"shape": "ellipse", "style": "filled", "fillcolor": "#fde2cf", "color": "#c2601a"},
    "category": {"shape": "folder", "style": "filled", "fillcolor": "#dff0f0",
                 "color": "#2a7f7f"},
    "product": {"shape": "box", "style": "filled", "fillcolor": "#ffffff", "color": "#555555"},
    "reason": {"shape": "box", "style": "rounded,filled", "fillcolor": "#e3f4d7",
               "color": "#4d8a1f"},
    "query": {"shape": "cds", "style": "filled", "fillcolor": "#fbe3ec", "color": "#b03a64"},
    "attribute": {"shape": "tab", "style": "filled", "fillcolor": "#f2f2f2", "color": "#777777"},
    "metric": {"shape": "box3d", "style": "filled", "fillcolor": "#fff0d9", "color": "#d07a00"},
    "idea": {"shape": "note", "style": "filled", "fillcolor": "#fff3b0", "color": "#b58b00",
             "fontsize": "12"},
    "figure": {"shape": "box", "style": "filled", "fillcolor": "#eaf4ff", "color": "#2f6db5"},
    "placeholder": {"shape": "box", "style": "rounded,dashed", "color": "#b0b0b0",
                    "fontcolor": "#777777"},
    "more": {"shape": "box", "style": "rounded,dashed", "color": "#888888",
             "fontcolor": "#555555", "fontsize": "10"},
}

# Edge kinds: "tree" edges form the hierarchy (they are what the caps count); others cross-link.
EDGE_STYLES: dict[str, dict[str, str]] = {
    "tree": {"color": "#8a8a8a", "arrowsize": "0.6"},
    "sequence": {"color": "#3b6fb6", "style": "dashed", "penwidth": "1.6", "constraint": "false"},
    "link": {"color": "#999999", "style": "dotted"},
    "cooccur": {"color": "#d07a00", "dir": "none", "constraint": "false"},
    "complement": {"color": "#2a7f7f", "style": "dashed", "dir": "none", "constraint": "false"},
    "more": {"color": "#aaaaaa", "style": "dashed", "arrowsize": "0.6"},
}

EDGE_MEANING: dict[str, str] = {
    "tree": "part of", "sequence": "next step", "link": "related", "more": "collapsed",
    "cooccur": "bought together", "complement": "complements (taxonomy)",
}

GRAPH_ATTRS: dict[str, str] = {
    "fontname": "Helvetica", "nodesep": "0.18", "ranksep": "0.45", "newrank": "true",
}

INSTALL_HINT = (
    "The Graphviz 'dot' program is not installed (the Python package alone cannot draw).\n"
    "Install it with one of:\n"
    "  apt-get install graphviz                 (Debian/Ubuntu; Colab already has it)\n"
    "  conda install -c conda-forge graphviz\n"
    "  brew install graphviz                    (macOS)\n"
    "Meanwhile the DOT source is in the error's .source; paste it into any Graphviz viewer."
)

NEGATIVE_COLOR = "#c0392b"


class GraphvizNotInstalled(graphviz.ExecutableNotFound):
    """The ``dot`` binary is missing; ``.source`` still holds the DOT text of the map."""

    def __init__(self, source: str = "") -> None:
        RuntimeError.__init__(self, INSTALL_HINT)
        self.source = source


def register_kind(kind: str, **style: str) -> None:
    """Add (or restyle) a node kind in the shared :data:`NODE_STYLES` table."""
    NODE_STYLES[kind] = {k: str(v) for k, v in style.items()}


def dot_available() -> bool:
    """True when the Graphviz ``dot`` executable is on the PATH."""
    return shutil.which("dot") is not None


def _escape(text: str, width: int) -> str:
    """Wrap ``text`` at ``width`` and escape it for a DOT label (quotes, \\, <...>, &)."""
    lines: list[str] = []
    for paragraph in str(text).splitlines() or [""]:
        wrapped = textwrap.wrap(paragraph, width=width, break_long_words=False,
                                break_on_hyphens=False) if width > 0 else [paragraph]
        lines.extend(wrapped or [""])
    # Backslashes are DOT escapes and '&name;' an entity: make both literal, then join
    # with DOT's own newline escape. nohtml() keeps '<...>' from being read as HTML.
    escaped = [line.replace("\\", "\\\\").replace("&", "&amp;") for line in lines]
    return graphviz.nohtml("\\n".join(escaped))


def _dot_id(node_id: str) -> str:
    """A DOT node id: graphviz reads ':' in an edge end as a port, so encode it."""
    return node_id.replace("%", "%25").replace(":", "%3A")


def _fmt_weight(weight: float) -> str:
    return f"{weight:,.0f}" if abs(weight) >= 1000 else f"{weight:.3g}"


@dataclass
class _Node:
    node_id: str
    label: str
    kind: str
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class _Edge:
    src: str
    dst: str
    label: str | None
    weight: float | None
    kind: str
    attrs: dict[str, str] = field(default_factory=dict)


class MindMap:
    """A mind map: nodes with a kind, hierarchy ("tree") edges and cross links.

    ``max_children`` caps the children shown per node (highest ``weight`` first, else in
    insertion order; the rest become one "+N more" node); ``max_nodes`` caps all nodes shown,
    "+N more" nodes included. ``rankdir="LR"`` reads left to right.
    """

    def __init__(self, name: str = "mindmap", *, title: str | None = None,
                 rankdir: str = "LR", wrap_width: int = 24, max_children: int = 8,
                 max_nodes: int = 150, legend: bool = True,
                 styles: Mapping[str, Mapping[str, str]] | None = None,
                 graph_attrs: Mapping[str, str] | None = None) -> None:
        if max_children < 1 or max_nodes < 1:
            raise ValueError(f"max_children and max_nodes must be >= 1, "
                             f"got {max_children} and {max_nodes}")
        self.name = name
        self.title = title
        self.rankdir = rankdir
        self.wrap_width = wrap_width
        self.max_children = max_children
        self.max_nodes = max_nodes
        self.legend = legend
        self._styles = dict(styles or {})
        self.graph_attrs = dict(graph_attrs or {})
        self.nodes: dict[str, _Node] = {}
        self.edges: list[_Edge] = []

    # -- building ---------------------------------------------------------------------------
    def style_of(self, kind: str) -> dict[str, str]:
        """The style of a node kind (this map's ``styles`` first, then :data:`NODE_STYLES`)."""
        if kind in self._styles:
            return dict(self._styles[kind])
        if kind in NODE_STYLES:
            return dict(NODE_STYLES[kind])
        known = sorted(set(NODE_STYLES) | set(self._styles))
        raise ValueError(f"unknown node kind {kind!r}; known kinds: {', '.join(known)} "
                         f"(add one with register_kind())")

    def add_node(self, node_id: str, label: str | None = None, kind: str = "concept",
                 **attrs: Any) -> str:
        """Add a node; ``attrs`` are extra Graphviz attributes (tooltip, URL...). Returns its id."""
        node_id = str(node_id)
        if node_id in self.nodes:
            raise ValueError(f"node {node_id!r} already exists")
        self.style_of(kind)  # validates the kind
        self.nodes[node_id] = _Node(node_id, node_id if label is None else str(label), kind,
                                    {k: str(v) for k, v in attrs.items()})
        return node_id

    def add_edge(self, src: str, dst: str, label: str | None = None,
                 weight: float | None = None, *, kind: str = "tree", **attrs: Any) -> None:
        """Link two existing nodes. ``kind``: "tree" (hierarchy), "sequence", "link"...

        ``weight`` sets the pen width (relative to the largest |weight| shown) and, when no
        ``label`` is given, the label; a negative weight is drawn in red.
        """
        for end in (src, dst):
            if str(end) not in self.nodes:
                raise KeyError(f"unknown node id {end!r}; add it with add_node() first")
        if kind not in EDGE_STYLES:
            raise ValueError(f"unknown edge kind {kind!r}; known: {', '.join(EDGE_STYLES)}")
        self.edges.append(_Edge(str(src), str(dst), None if label is None else str(label),
                                None if weight is None else float(weight), kind,
                                {k: str(v) for k, v in attrs.items()}))

    def add_child(self, parent: str, node_id: str, label: str | None = None,
                  kind: str = "concept", *, weight: float | None = None,
                  edge_label: str | None = None, **attrs: Any) -> str:
        """Add a node under ``parent`` (a "tree" edge). Returns the new id."""
        if str(parent) not in self.nodes:
            raise KeyError(f"unknown parent id {parent!r}")
        self.add_node(node_id, label, kind, **attrs)
        self.add_edge(parent, node_id, edge_label, weight)
        return str(node_id)

    # -- layout decisions -------------------------------------------------------------------
    def _children(self) -> dict[str, list[_Edge]]:
        children: dict[str, list[_Edge]] = {nid: [] for nid in self.nodes}
        for edge in self.edges:
            if edge.kind == "tree":
                children[edge.src].append(edge)
        return children

    @staticmethod
    def _reach(starts: Iterable[str], children: Mapping[str, list[_Edge]],
               reached: set[str]) -> None:
        stack = list(starts)
        while stack:
            nid = stack.pop()
            if nid not in reached:
                reached.add(nid)
                stack.extend(e.dst for e in children[nid])

    def _visible(self) -> tuple[list[str], list[tuple[str, int]], bool]:
        """Breadth-first pick of the nodes to draw.

        Returns (shown ids, [(parent, n children hidden)], whether ``max_nodes`` cut anything).
        """
        children = self._children()
        has_parent = {e.dst for e in self.edges if e.kind == "tree"}
        roots = [nid for nid in self.nodes if nid not in has_parent]
        # A cycle of tree edges has no root: its first node not reached otherwise becomes one.
        reached: set[str] = set()
        self._reach(roots, children, reached)
        for nid in self.nodes:
            if nid not in reached:
                roots.append(nid)
                self._reach([nid], children, reached)
        shown: list[str] = []
        seen: set[str] = set()
        more: list[tuple[str, int]] = []
        budget = self.max_nodes
        for root in roots[:budget]:
            shown.append(root)
            seen.add(root)
        budget -= len(shown)
        truncated = len(shown) < len(roots)
        queue = list(shown)
        i = 0
        while i < len(queue):
            parent = queue[i]
            i += 1
            kids: list[_Edge] = []
            kid_ids: set[str] = set()
            for e in children[parent]:
                if e.dst not in seen and e.dst not in kid_ids:
                    kids.append(e)
                    kid_ids.add(e.dst)
            if not kids:
                continue
            # Highest |weight| first (unweighted count as 0), ties in insertion order.
            order = sorted(range(len(kids)), key=lambda j: (
                -abs(kids[j].weight) if kids[j].weight is not None else 0.0, j))
            limit = min(self.max_children, len(kids))
            if limit > budget:
                truncated = True
            if limit < len(kids) or limit > budget:
                limit = max(0, min(limit, budget - 1))  # the "+N more" node takes a slot
            keep_idx = set(order[:limit])
            kept = [kids[j].dst for j in range(len(kids)) if j in keep_idx]
            for nid in kept:
                shown.append(nid)
                seen.add(nid)
                queue.append(nid)
            budget -= len(kept)
            n_hidden = len(kids) - len(kept)
            if n_hidden and budget >= 1:
                more.append((parent, n_hidden))
                budget -= 1
        return shown, more, truncated

    def kinds_used(self) -> list[str]:
        """Node kinds drawn (after the caps), in order of first appearance; "more" last."""
        shown, more, _ = self._visible()
        kinds = [self.nodes[nid].kind for nid in shown] + (["more"] if more else [])
        return list(dict.fromkeys(kinds))

    # -- output -----------------------------------------------------------------------------
    def to_graphviz(self) -> graphviz.Digraph:
        """The map as a ``graphviz.Digraph`` (caps, styles and legend applied)."""
        shown, more, truncated = self._visible()
        visible = set(shown)
        g = graphviz.Digraph(self.name)
        g.attr("graph", rankdir=self.rankdir, **GRAPH_ATTRS, **self.graph_attrs)
        title_lines = [self.title] if self.title else []
        if truncated:
            title_lines.append(f"(showing {len(shown)} of {len(self.nodes)} nodes)")
        if title_lines:
            g.attr("graph", label=_escape("\n".join(title_lines), 0), labelloc="t",
                   fontsize="18")
        g.attr("node", fontname="Helvetica", fontsize="11", margin="0.12,0.05")
        g.attr("edge", fontname="Helvetica", fontsize="9")

        for nid in shown:
            node = self.nodes[nid]
            g.node(_dot_id(nid), _escape(node.label, self.wrap_width),
                   **{**self.style_of(node.kind), **node.attrs})
        drawn = [e for e in self.edges if e.src in visible and e.dst in visible]
        max_w = max((abs(e.weight) for e in drawn if e.weight is not None), default=0.0)
        for e in drawn:
            attrs = dict(EDGE_STYLES[e.kind])
            label = e.label
            if e.weight is not None:
                if label is None:
                    label = _fmt_weight(e.weight)
                if max_w > 0:
                    attrs["penwidth"] = f"{1 + 4 * abs(e.weight) / max_w:.2f}"
                if e.weight < 0:
                    attrs.update(color=NEGATIVE_COLOR, fontcolor=NEGATIVE_COLOR)
            attrs.update(e.attrs)
            if label is not None:
                attrs["label"] = _escape(label, max(self.wrap_width - 6, 8))
            g.edge(_dot_id(e.src), _dot_id(e.dst), **attrs)
        taken = {_dot_id(nid) for nid in self.nodes}
        for parent, n in more:  # after the real children, so they are drawn last
            more_id = _dot_id(f"{parent} (+more)")
            while more_id in taken:
                more_id += "'"
            g.node(more_id, f"+{n} more", **self.style_of("more"))
            g.edge(_dot_id(parent), more_id, **EDGE_STYLES["more"])

        if self.legend:
            self._add_legend(g, self.kinds_used(),
                             list(dict.fromkeys(e.kind for e in drawn if e.kind != "tree")))
        return g

    def _add_legend(self, g: graphviz.Digraph, kinds: Sequence[str],
                    edge_kinds: Sequence[str]) -> None:
        with g.subgraph(name="cluster_legend") as lg:
            lg.attr(label="Legend", style="rounded,dashed", color="#bbbbbb", fontsize="11")
            prev = None
            for kind in kinds:
                lid = f"__legend_kind_{kind}"
                lg.node(lid, kind, **{**self.style_of(kind), "fontsize": "10"})
                if prev is not None:
                    lg.edge(prev, lid, style="invis")
                prev = lid
            for kind in edge_kinds:
                a, b = f"__legend_edge_{kind}_from", f"__legend_edge_{kind}"
                lg.node(a, "", shape="point", width="0.06")
                text = f"{kind}: {EDGE_MEANING[kind]}" if kind in EDGE_MEANING else kind
                lg.node(b, text, shape="plaintext", fontsize="10")
                lg.edge(a, b, **{**EDGE_STYLES[kind], "constraint": "true"})

    @property
    def source(self) -> str:
        """The DOT source (deterministic)."""
        return self.to_graphviz().source

    def to_svg(self) -> str:
        """The map drawn as SVG text (needs ``dot``; see :func:`to_svg`)."""
        return to_svg(self)

    def to_png_bytes(self) -> bytes:
        """The map drawn as PNG bytes (needs ``dot``; see :func:`to_png_bytes`)."""
        return to_png_bytes(self)

    def _repr_mimebundle_(self, include: Iterable[str] | None = None,
                          exclude: Iterable[str] | None = None, **kwargs: Any) -> dict:
        """Inline display in Jupyter/Colab; the DOT source as text when ``dot`` is missing."""
        if not dot_available():
            return {"text/plain": f"{INSTALL_HINT}\n\n{self.source}"}
        return self.to_graphviz()._repr_mimebundle_(include, exclude, **kwargs)

    def __repr__(self) -> str:
        return (f"MindMap({self.name!r}, {len(self.nodes)} nodes, {len(self.edges)} edges, "
                f"max_children={self.max_children}, max_nodes={self.max_nodes})")


MapLike = Union[MindMap, graphviz.Digraph, graphviz.Graph]


def _as_graph(obj: MapLike) -> graphviz.Digraph | graphviz.Graph:
    return obj.to_graphviz() if isinstance(obj, MindMap) else obj


def render(mind_map: MapLike, path_stem: str | os.PathLike,
           formats: Sequence[str] | str = ("svg", "png")) -> list[Path]:
    """Write ``path_stem.<fmt>`` for each format; returns the paths.

    Every format is rendered into a temporary folder first and only then moved into place
    (``os.replace``), so a failure leaves no half-written file. ``"gv"`` writes the DOT source.
    Raises :class:`GraphvizNotInstalled` (with ``.source``) when ``dot`` is missing.
    """
    if isinstance(formats, str):
        formats = (formats,)
    graph = _as_graph(mind_map)
    stem = Path(path_stem)
    needs_dot = any(fmt not in ("gv", "dot") for fmt in formats)
    if needs_dot and not dot_available():
        raise GraphvizNotInstalled(graph.source)
    stem.parent.mkdir(parents=True, exist_ok=True)
    targets: list[Path] = []
    with tempfile.TemporaryDirectory(dir=stem.parent, prefix=f".{stem.name}.") as tmp:
        staged: list[tuple[Path, Path]] = []
        for fmt in formats:
            tmp_file = Path(tmp) / f"{stem.name}.{fmt}"
            if fmt in ("gv", "dot"):
                tmp_file.write_text(graph.source, encoding="utf-8")
            else:
                try:
                    tmp_file.write_bytes(graph.pipe(format=fmt))
                except graphviz.ExecutableNotFound as exc:
                    raise GraphvizNotInstalled(graph.source) from exc
            staged.append((tmp_file, stem.parent / f"{stem.name}.{fmt}"))
        for tmp_file, target in staged:
            os.replace(tmp_file, target)
            targets.append(target)
    return targets


def to_bytes(mind_map: MapLike, fmt: str = "png") -> bytes:
    """The map drawn in format ``fmt`` ("png", "svg", "pdf"...), in memory.

    Raises :class:`GraphvizNotInstalled` (with ``.source``) when ``dot`` is missing.
    """
    graph = _as_graph(mind_map)
    if not dot_available():
        raise GraphvizNotInstalled(graph.source)
    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound as exc:
        raise GraphvizNotInstalled(graph.source) from exc


def to_svg(mind_map: MapLike) -> str:
    """The map as SVG text (for a web page or a slide)."""
    return to_bytes(mind_map, "svg").decode("utf-8")


def to_png_bytes(mind_map: MapLike) -> bytes:
    """The map as PNG bytes (e.g. ``IPython.display.Image(to_png_bytes(m))``)."""
    return to_bytes(mind_map, "png")


def display_map(mind_map: MapLike) -> None:
    """Show a map inline (Jupyter/Colab); without ``dot``, print the install hint and DOT source."""
    graph = _as_graph(mind_map)
    if not dot_available():
        print(f"{INSTALL_HINT}\n\n{graph.source}")
        return
    try:
        from IPython.display import display
    except ImportError:  # plain Python: nothing can show an image here
        print(graph.source)
        return
    try:
        display(mind_map)
    except graphviz.ExecutableNotFound:
        print(f"{INSTALL_HINT}\n\n{graph.source}")


# -- the course concept map ---------------------------------------------------------------------
# (code, title, course_lib module or None, key concepts)
COURSE_STAGES: tuple[tuple[str, str, str | None, tuple[str, ...]], ...] = (
    ("00", "Orientation", None,
     ("products, users, events, queries, qrels", "profiles: smoke / workshop / full",
      "the pipeline at a glance")),
    ("01", "Data cleaning", "course_lib.cleaning",
     ("PII scrubbing", "units & prices", "dedup & bots", "cleaning report")),
    ("02", "Encoding & semantic search", "course_lib.encoding/.retrieval",
     ("WordPiece tokens", "mean pooling", "cosine similarity", "BM25 vs dense vs hybrid")),
    ("03", "Fine-tuning (GPU-ready)", "course_lib.finetune",
     ("InfoNCE with in-batch negatives", "cross-encoder reranker", "LoRA",
      "mixed precision")),
    ("04", "Recommendation & ranking", "course_lib.recommend",
     ("user interest vectors (attention)", "candidates from several sources", "click model")),
    ("05", "Evaluation & A/B testing", "course_lib.abtest/.stats",
     ("ndcg@10 / recall@100 / mrr@10", "z-test & bootstrap", "power & peeking")),
    ("06", "Mind maps & explanations", "course_lib.maps/.explain",
     ('"why this item" maps', "faithful feature contributions", "metric driver tree")),
    ("07", "Business innovation workshop", "course_lib.innovation",
     ("long tail", "cold start", "bundles", "price bands")),
    ("08", "Deployment", "course_lib.serving",
     ("int8 quantisation", "incremental index", "latency p50/p99")),
)

COURSE_TITLE = "BERT for e-commerce search & recommendation"


def course_concept_map(**options: Any) -> MindMap:
    """The course as a mind map: root → the nine lessons (with their module) → key concepts.

    Dashed blue "sequence" edges show the lesson order 00 → 01 → … → 08. ``options`` go to
    :class:`MindMap` (e.g. ``legend=False``).
    """
    m = MindMap("course_concept_map", **{"wrap_width": 30, "max_children": 12, **options})
    m.add_node("course", COURSE_TITLE, kind="root")
    previous = None
    for code, title, module, concepts in COURSE_STAGES:
        stage_id = f"s{code}"
        label = f"{code} {title}" + (f"\n{module}" if module else "")
        m.add_child("course", stage_id, label, kind="stage")
        for i, concept in enumerate(concepts, start=1):
            m.add_child(stage_id, f"{stage_id}_c{i}", concept, kind="concept")
        if previous is not None:
            m.add_edge(previous, stage_id, kind="sequence")
        previous = stage_id
    return m
