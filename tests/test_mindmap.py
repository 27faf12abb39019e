"""Tests for course_lib.mindmap: structure, caps, escaping, rendering, missing dot, legend."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import graphviz
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import mindmap
from course_lib.mindmap import (
    COURSE_STAGES, GraphvizNotInstalled, MindMap, course_concept_map, display_map,
    dot_available, register_kind, render,
)

needs_dot = pytest.mark.skipif(not dot_available(), reason="Graphviz 'dot' is not installed")

SVG_NS = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_QUOTED = r'"(?:[^"\\]|\\.)*"'
_NODE_RE = re.compile(rf'^\s*({_QUOTED}|[\w.%-]+) \[label=({_QUOTED}|[^ \]]+)', re.M)
_EDGE_RE = re.compile(rf'^\s*({_QUOTED}|[\w.%-]+) -> ({_QUOTED}|[\w.%-]+)(?: \[(.*)\])?$', re.M)


def _unquote(token: str) -> str:
    """DOT token -> the text a reader sees (\\n as a space, entities decoded)."""
    if token.startswith('"'):
        token = token[1:-1]
    text = re.sub(r"\\(.)", lambda m: " " if m.group(1) == "n" else m.group(1), token)
    return text.replace("&amp;", "&")


def label_lines(token: str) -> list[str]:
    """The visible lines of a quoted DOT label."""
    lines, current, i = [], "", 0
    body = token[1:-1]
    while i < len(body):
        if body[i] == "\\":
            if body[i + 1] == "n":
                lines.append(current)
                current = ""
            else:
                current += body[i + 1]
            i += 2
        else:
            current += body[i]
            i += 1
    return [ln.replace("&amp;", "&") for ln in lines + [current]]


def node_labels(source: str) -> dict[str, str]:
    return {_unquote(i): _unquote(lbl) for i, lbl in _NODE_RE.findall(source)}


def edges(source: str) -> dict[tuple[str, str], str]:
    return {(_unquote(a), _unquote(b)): attrs for a, b, attrs in _EDGE_RE.findall(source)}


def real_nodes(source: str) -> dict[str, str]:
    return {k: v for k, v in node_labels(source).items() if not k.startswith("__legend")}


def star(n_children: int, **kwargs) -> MindMap:
    m = MindMap(**kwargs)
    m.add_node("root", "Root", kind="root")
    for i in range(n_children):
        m.add_child("root", f"c{i}", f"child {i}", kind="concept")
    return m


# -- the course concept map --------------------------------------------------------------------
def test_concept_map_has_every_stage_concepts_and_sequence():
    src = course_concept_map().source
    labels = node_labels(src)
    links = edges(src)
    assert labels["course"] == "BERT for e-commerce search & recommendation"
    assert len(COURSE_STAGES) == 9
    for code, title, module, concepts in COURSE_STAGES:
        sid = f"s{code}"
        assert labels[sid].startswith(f"{code} {title}")
        assert (module in labels[sid]) if module else ("course_lib" not in labels[sid])
        assert ("course", sid) in links and "dashed" not in links[("course", sid)]
        kids = [dst for (src_, dst) in links if src_ == sid and dst.startswith(f"{sid}_c")]
        assert 2 <= len(kids) <= 4
        assert [labels[k] for k in kids] == list(concepts)
    for a, b in zip(range(8), range(1, 9)):
        attrs = links[(f"s{a:02d}", f"s{b:02d}")]
        assert "style=dashed" in attrs and "constraint=false" in attrs
    assert ("s08", "s00") not in links and ("s00", "s02") not in links
    text = " | ".join(labels.values())
    for concept in ("WordPiece tokens", "InfoNCE with in-batch negatives", "LoRA",
                    "ndcg@10 / recall@100 / mrr@10", "int8 quantisation", "PII scrubbing"):
        assert concept in text
    for module in ("course_lib.cleaning", "course_lib.encoding/.retrieval", "course_lib.finetune",
                   "course_lib.recommend", "course_lib.abtest/.stats", "course_lib.maps/.explain",
                   "course_lib.innovation", "course_lib.serving"):
        assert module in text
    assert "+" not in "".join(k for k in labels if "more" in k)  # nothing collapsed


def test_concept_map_names_modules_that_exist():
    import importlib

    from course_lib.mindmap import COURSE_STAGES

    for code, _title, named, _concepts in COURSE_STAGES:
        if named is None:
            continue
        first, *others = named.split("/")
        importlib.import_module(first)
        for other in others:  # "course_lib.encoding/.retrieval" names course_lib.retrieval too
            importlib.import_module(first.rsplit(".", 1)[0] + other)


def test_concept_map_source_is_deterministic():
    assert course_concept_map().source == course_concept_map().source
    a, b = star(12, max_children=5), star(12, max_children=5)
    assert a.source == b.source


# -- caps --------------------------------------------------------------------------------------
def test_child_cap_collapses_the_rest_into_one_more_node():
    src = star(12, max_children=5).source
    labels = real_nodes(src)
    kids = [dst for (s, dst) in edges(src) if s == "root"]
    assert len(kids) == 6
    assert [labels[k] for k in kids[:5]] == [f"child {i}" for i in range(5)]
    assert labels[kids[5]] == "+7 more"
    assert "c5" not in labels and "c11" not in labels


def test_child_cap_keeps_the_heaviest_weighted_children():
    m = MindMap(max_children=2)
    m.add_node("item", "Item", kind="product")
    for i, w in enumerate([0.1, -0.9, 0.5, 0.05]):
        m.add_child("item", f"r{i}", f"reason {i}", kind="reason", weight=w)
    labels = real_nodes(m.source)
    assert {"r1", "r2"} <= set(labels) and not {"r0", "r3"} & set(labels)
    assert "+2 more" in labels.values()


def test_total_node_cap_and_note():
    m = MindMap(max_nodes=6)
    m.add_node("r", "R", kind="root")
    for a in "abc":
        m.add_child("r", a, a.upper(), kind="topic")
        for i in range(3):
            m.add_child(a, f"{a}{i}", f"{a}{i}", kind="concept")
    src = m.source
    labels = real_nodes(src)
    assert len(labels) == 6
    assert {"r", "a", "b", "c"} <= set(labels)
    assert "+2 more" in labels.values()
    assert "showing 5 of 13 nodes" in src


@settings(max_examples=40, deadline=None, database=None)
@given(parents=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
       max_children=st.integers(1, 6), max_nodes=st.integers(1, 25))
def test_caps_hold_for_any_tree(parents, max_children, max_nodes):
    m = MindMap(max_children=max_children, max_nodes=max_nodes, legend=False)
    m.add_node("n0", kind="root")
    for i, p in enumerate(parents, start=1):
        m.add_child(f"n{p % i}", f"n{i}")
    src = m.source
    labels = real_nodes(src)
    assert 1 <= len(labels) <= max_nodes
    out: dict[str, int] = {}
    for s, _ in edges(src):
        out[s] = out.get(s, 0) + 1
    assert all(n <= max_children + 1 for n in out.values())
    shown = [k for k, v in labels.items() if not v.startswith("+")]
    hidden = sum(int(v.split()[0][1:]) for v in labels.values() if v.startswith("+"))
    assert hidden <= len(m.nodes) - len(shown)
    if len(shown) < len(m.nodes):
        assert hidden > 0 or "showing" in src


# -- labels ------------------------------------------------------------------------------------
TRICKY = 'Say "hi" <b>bold</b> & R&D &amp; C:\\path\\ and a_very_long_unbreakable_word\nline two'


def test_labels_are_wrapped_and_escaped():
    m = MindMap(wrap_width=12)
    m.add_node("x", TRICKY, kind="product")
    m.add_node("html", "<b>html</b>", kind="attribute")
    m.add_edge("x", "html", label='edge "label" & <more>')
    src = m.source
    raw = re.search(rf'\bx \[label=({_QUOTED})', src).group(1)[1:-1]
    lines = label_lines(f'"{raw}"')
    assert all(len(ln) <= 12 or " " not in ln for ln in lines), lines
    assert len(lines) == 6
    assert "a_very_long_unbreakable_word" in lines and lines[-1] == "line two"
    assert '\\"hi\\"' in raw and "&amp;amp;" in raw and "C:\\\\path\\\\" in raw
    assert 'html [label="<b>html</b>"' in src  # quoted: a plain string, not an HTML label
    assert node_labels(src)["x"] == " ".join(TRICKY.split())


@needs_dot
def test_tricky_labels_render_literally(tmp_path):
    m = MindMap(wrap_width=12)
    m.add_node("x", TRICKY, kind="product")
    m.add_node("p:1", "<looks like html>", kind="attribute")  # ':' is no port
    m.add_edge("x", "p:1", label='edge "label" & <more>')
    (svg,) = render(m, tmp_path / "tricky", "svg")
    root = ET.parse(svg).getroot()
    nodes = [g for g in root.iter(f"{SVG_NS}g") if g.get("class") == "node"
             and not g.findtext(f"{SVG_NS}title").startswith("__legend")]
    assert len(nodes) == 2
    texts = {g.findtext(f"{SVG_NS}title"): " ".join(t.text or "" for t in g.iter(f"{SVG_NS}text"))
             for g in nodes}
    assert texts["x"] == " ".join(TRICKY.split())
    assert texts["p%3A1"] == "<looks like html>"
    edge_text = " ".join(t.text or "" for g in root.iter(f"{SVG_NS}g")
                         if g.get("class") == "edge" for t in g.iter(f"{SVG_NS}text"))
    assert edge_text == 'edge "label" & <more>'


def test_weights_drive_label_penwidth_and_colour():
    m = MindMap()
    m.add_node("u", kind="user")
    m.add_child("u", "a", "A", kind="reason", weight=0.5)
    m.add_child("u", "b", "B", kind="reason", weight=-0.25)
    m.add_child("u", "c", "C", kind="reason", weight=2.0, edge_label="strong")
    e = edges(m.source)
    assert "label=0.5 " in e[("u", "a")] and "penwidth=2.00" in e[("u", "a")]
    assert "label=-0.25" in e[("u", "b")] and mindmap.NEGATIVE_COLOR in e[("u", "b")]
    assert "label=strong" in e[("u", "c")] and "penwidth=5.00" in e[("u", "c")]


# -- legend ------------------------------------------------------------------------------------
def test_legend_lists_exactly_the_kinds_used():
    m = MindMap(max_children=2)
    m.add_node("u", "Ann", kind="user")
    for i in range(3):
        m.add_child("u", f"p{i}", f"P{i}", kind="product")
    m.add_child("u", "cat", "Shoes", kind="category")  # collapsed: its kind is not drawn
    m.add_child("p0", "why", "same brand", kind="reason")
    m.add_edge("p0", "p1", kind="link")
    src = m.source
    legend = {k for k in node_labels(src) if k.startswith("__legend_kind_")}
    assert legend == {f"__legend_kind_{k}" for k in ("user", "product", "reason", "more")}
    assert m.kinds_used() == ["user", "product", "reason", "more"]
    assert "link: related" in src and "sequence" not in src
    assert "cluster_legend" not in MindMap(legend=False).source
    legend_cm = {k for k in node_labels(course_concept_map().source)
                 if k.startswith("__legend_kind_")}
    assert legend_cm == {"__legend_kind_root", "__legend_kind_stage", "__legend_kind_concept"}


def test_unknown_kinds_and_ids_are_named(monkeypatch):
    m = MindMap()
    with pytest.raises(ValueError, match="'gadget'"):
        m.add_node("g", kind="gadget")
    monkeypatch.setitem(mindmap.NODE_STYLES, "gadget", {})  # undone after the test
    register_kind("gadget", shape="hexagon", style="filled", fillcolor="#eeeeee")
    m.add_node("g", kind="gadget")
    assert 'shape=hexagon' in m.source and "__legend_kind_gadget" in m.source
    with pytest.raises(KeyError, match="'nope'"):
        m.add_edge("g", "nope")
    with pytest.raises(ValueError, match="already exists"):
        m.add_node("g", kind="gadget")


# -- rendering ---------------------------------------------------------------------------------
@needs_dot
def test_render_writes_valid_svg_and_png(tmp_path):
    paths = render(course_concept_map(), tmp_path / "maps" / "concept")
    assert [p.name for p in paths] == ["concept.svg", "concept.png"]
    assert ET.parse(paths[0]).getroot().tag == f"{SVG_NS}svg"
    assert paths[1].read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["concept.png", "concept.svg"]
    bundle = course_concept_map()._repr_mimebundle_()
    assert bundle["image/svg+xml"].lstrip().startswith("<?xml")


@needs_dot
def test_render_is_all_or_nothing(tmp_path):
    target = tmp_path / "m.svg"
    target.write_text("old")
    with pytest.raises(ValueError):
        render(star(3), tmp_path / "m", formats=("svg", "no-such-format"))
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.svg"]


def _no_dot_on_path(monkeypatch, tmp_path):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.mark.parametrize("route", ["which", "graphviz-backend"])
def test_missing_dot_gives_install_hint_and_source(monkeypatch, tmp_path, route, capsys):
    _no_dot_on_path(monkeypatch, tmp_path)
    if route == "graphviz-backend":  # skip our check: graphviz itself must fail to run dot
        monkeypatch.setattr(mindmap, "dot_available", lambda: True)
    else:
        assert not dot_available()
    m = course_concept_map()
    out = tmp_path / "out"
    with pytest.raises(GraphvizNotInstalled) as info:
        render(m, out / "concept")
    err = info.value
    assert isinstance(err, graphviz.ExecutableNotFound)
    for cmd in ("apt-get install graphviz", "conda install -c conda-forge graphviz",
                "brew install graphviz"):
        assert cmd in str(err)
    assert err.source == m.source and "s00 -> s01" in err.source
    assert not out.exists() or list(out.iterdir()) == []
    if route == "which":
        display_map(m)
        printed = capsys.readouterr().out
        assert "apt-get install graphviz" in printed and m.source in printed
        assert m._repr_mimebundle_() == {"text/plain": f"{mindmap.INSTALL_HINT}\n\n{m.source}"}
        (gv,) = render(m, out / "concept", formats=("gv",))  # the source needs no dot
        assert gv.read_text() == m.source


def test_cycles_and_cross_links_still_draw_every_node():
    m = MindMap()
    m.add_node("root", kind="root")
    m.add_child("root", "a")
    for x, y in (("x", "y"), ("y", "z"), ("z", "x")):  # a cycle with no root of its own
        if x not in m.nodes:
            m.add_node(x)
        if y not in m.nodes:
            m.add_node(y)
        m.add_edge(x, y)
    m.add_edge("a", "root", kind="link")
    labels = real_nodes(m.source)
    assert set(labels) == {"root", "a", "x", "y", "z"}
    drawn = [e for e in edges(m.source) if not e[0].startswith("__legend")]
    assert drawn == [("root", "a"), ("x", "y"), ("y", "z"), ("z", "x"), ("a", "root")]


# -- in-memory drawing: to_svg / to_png_bytes ---------------------------------------------------
@needs_dot
def test_to_svg_and_png_bytes_in_memory():
    m = course_concept_map()
    svg = mindmap.to_svg(m)
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{SVG_NS}svg"
    titles = {g.findtext(f"{SVG_NS}title") for g in root.iter(f"{SVG_NS}g")
              if g.get("class") == "node"}
    assert {"course", "s00", "s08"} <= titles
    png = m.to_png_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 1000
    assert m.to_svg() == svg and mindmap.to_bytes(m, "png")[:8] == PNG_MAGIC


@pytest.mark.parametrize("route", ["which", "graphviz-backend", "which-monkeypatched"])
def test_in_memory_drawing_without_dot_names_the_install_command(monkeypatch, tmp_path, route):
    if route == "which-monkeypatched":  # graphviz's executable lookup finds nothing
        monkeypatch.setattr(mindmap.shutil, "which", lambda *a, **k: None)
        assert not dot_available()
    else:
        _no_dot_on_path(monkeypatch, tmp_path)
        if route == "graphviz-backend":
            monkeypatch.setattr(mindmap, "dot_available", lambda: True)
    m = star(3)
    for draw in (mindmap.to_png_bytes, mindmap.to_svg, lambda x: x.to_png_bytes()):
        with pytest.raises(GraphvizNotInstalled) as info:
            draw(m)
        assert "apt-get install graphviz" in str(info.value)
        assert "conda install -c conda-forge graphviz" in str(info.value)
        assert info.value.source == m.source and "root -> c0" in info.value.source


def test_workshop_kinds_and_cross_link_kinds_have_styles_and_legend():
    m = MindMap()
    m.add_node("r", "Ideas", kind="root")
    m.add_child("r", "i", "Bundles", kind="idea")
    m.add_child("i", "f", "lift: 1.4", kind="figure")
    m.add_child("i", "q", "your number?", kind="placeholder")
    m.add_edge("f", "q", kind="cooccur", weight=3)
    m.add_edge("q", "f", kind="complement")
    src = m.source
    legend = {k for k in node_labels(src) if k.startswith("__legend_kind_")}
    assert legend == {f"__legend_kind_{k}" for k in ("root", "idea", "figure", "placeholder")}
    assert "cooccur: bought together" in src and "complement: complements (taxonomy)" in src
    links = edges(src)
    assert "dir=none" in links[("f", "q")] and "constraint=false" in links[("f", "q")]
    assert "style=dashed" in links[("q", "f")]
