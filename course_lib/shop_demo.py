"""A tiny shop in ipywidgets: search, click a result to view it, and watch the recommendations move.

    demo = ShopDemo(catalog, searcher=shop)     # shop: a serving.Recommender (or anything with .search)
    demo                                        # displays the widget in Jupyter / Colab

Viewing a product is a click in a :class:`~course_lib.recommend.Session`: the interest vector
moves, and the "recommended for you" row and its mind map are recomputed at once, with no
retraining. The callbacks are plain methods that set widget values, so they run without a
browser::

    demo.query.value = "earbuds"            # -> on_query: the results list
    demo.results.value = "P00042"           # -> on_select: view it; recommendations and map update
    demo.recommendations, demo.map_source, demo.message.value

The map's reasons are exact: a session scores an item by its cosine with the interest vector,
the recency-weighted mean of the viewed products' vectors, so the score splits into one term per
viewed product (:func:`session_contributions`), and the terms add up to the score.
"""
from __future__ import annotations

import html
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from . import columns as C
from . import maps
from .explorer import map_html, results_html
from .mindmap import MindMap
from .recommend import Catalog, Session

PROMPT = "Search the shop (type, then press Enter), then pick a result to view it."


def session_contributions(session: Session, recommendations: pd.DataFrame) -> pd.DataFrame:
    """Each recommended item's score split by viewed product: ``product_id, reason,
    contribution`` with reason "similar to <title>". The contributions of an item add up to its
    score (``w_j × cos(item, viewed_j) / |Σ w v|`` with the session's recency weights ``w``)."""
    if not session.clicks:
        raise ValueError("the session has no views yet, so its recommendations have no reasons")
    cat = session.catalog
    ages = np.arange(len(session.clicks))[::-1].astype(float)
    w = 0.5 ** (ages / session.half_life)
    w = w / w.sum()
    viewed = cat.vectors_of(session.clicks).astype(np.float64)
    norm = float(np.linalg.norm(w @ viewed)) or 1.0
    items = cat.vectors_of(recommendations[C.PRODUCT_ID]).astype(np.float64)
    parts = (items @ viewed.T) * w[None, :] / norm            # [items, views]
    titles = cat.products.set_index(C.PRODUCT_ID)[C.TITLE] if C.TITLE in cat.products.columns else None
    names = [f"similar to {titles[p][:40] if titles is not None else p}" for p in session.clicks]
    long = pd.DataFrame({C.PRODUCT_ID: np.repeat(recommendations[C.PRODUCT_ID].to_numpy(), len(names)),
                         C.REASON: np.tile(np.asarray(names, dtype=object), len(items)),
                         C.CONTRIBUTION: parts.ravel()})
    return long.groupby([C.PRODUCT_ID, C.REASON], sort=False)[C.CONTRIBUTION].sum().reset_index()


class ShopDemo:
    """Widgets: ``query`` (Text), ``results`` (Select: pick one to view it), ``message``,
    ``viewed``, ``recs`` and ``map`` (HTML).

    ``catalog``: products and vectors; ``searcher``: anything with ``search(query, k)`` returning
    ``product_id`` rows (a :class:`~course_lib.serving.Recommender`); ``counts``: popularity for
    the first row before any view; ``history``: products viewed before the demo starts.
    """

    def __init__(self, catalog: Catalog, searcher: Any, *, k: int = 5, counts: pd.Series | None = None,
                 history: list[Hashable] | tuple = (), user_label: str = "you", half_life: float = 2.0):
        import ipywidgets as W

        self.catalog, self.searcher, self.k, self.user_label = catalog, searcher, k, user_label
        self.session = Session(catalog, counts=counts, half_life=half_life, history=history)
        self._info = catalog.products.set_index(C.PRODUCT_ID)
        self.query = W.Text(value="", placeholder="e.g. wireless earbuds", description="Search",
                            continuous_update=False)
        self.results = W.Select(options=[], value=None, rows=k, description="Results",
                                layout=W.Layout(width="60%"))
        self.message = W.HTML(value=PROMPT)
        self.viewed = W.HTML(value="")
        self.recs = W.HTML(value="")
        self.map = W.HTML(value="")
        self.recommendations: pd.DataFrame | None = None
        self.current_map: MindMap | None = None
        self._filling = False
        self.query.observe(self.on_query, names="value")
        self.results.observe(self.on_select, names="value")
        self.widget = W.VBox([self.query, self.results, self.message, self.viewed,
                              W.HTML("<b>Recommended for you</b>"), self.recs, self.map])
        self.refresh()

    @property
    def map_source(self) -> str:
        """The DOT source of the map shown ('' before the first view)."""
        return self.current_map.source if self.current_map is not None else ""

    # -- actions -------------------------------------------------------------------------------
    def search(self, query: str) -> None:
        """Fill the results list with the top ``k`` matches of ``query`` (a message if empty)."""
        try:
            hits = self.searcher.search(query, self.k)
        except (ValueError, TypeError) as err:
            self._filling = True
            try:
                self.results.options = []
            finally:
                self._filling = False
            self.message.value = f"<b>{html.escape(str(err))}</b>"
            return
        self._filling = True                  # setting options may select one: that is no click
        try:
            self.results.options = [(self._label(pid), pid) for pid in hits[C.PRODUCT_ID]]
            self.results.value = None
        finally:
            self._filling = False
        self.message.value = html.escape(f"{len(hits)} results for “{query.strip()}”: pick one to view it.")

    def view(self, product_id: Hashable) -> None:
        """View a product: a click in the session; the recommendations and map update."""
        try:
            self.session.click(product_id)
        except KeyError as err:
            self.message.value = f"<b>{html.escape(err.args[0] if err.args else str(err))}</b>"
            return
        row = self._info.loc[product_id]
        self.viewed.value = (f"Viewing <b>{html.escape(str(row.get(C.TITLE, product_id)))}</b> "
                             f"({html.escape(str(row[C.CATEGORY]))}, ${float(row[C.PRICE]):.2f}); "
                             f"{len(self.session.clicks)} product(s) viewed.")
        self.refresh()

    def refresh(self) -> None:
        """Recompute the recommendations (and their map once something was viewed)."""
        recs = self.session.recommend(self.k)
        cols = [c for c in (C.PRICE,) if c in self._info.columns and c not in recs.columns]
        self.recommendations = recs.join(self._info[cols], on=C.PRODUCT_ID) if cols else recs
        self.recs.value = results_html(self.recommendations)
        if self.session.clicks:
            self.current_map = self.why_map()
            self.map.value = map_html(self.current_map)
        else:
            self.current_map, self.map.value = None, "<i>View a product to see why items are recommended.</i>"

    def why_map(self) -> MindMap:
        """The "why these items?" map of the current recommendations, clustered by category, with
        the viewed products' categories as interests."""
        recs = self.recommendations
        contrib = session_contributions(self.session, recs)
        cats = self._info.loc[self.session.clicks, C.CATEGORY].astype(str)
        interests = cats.value_counts(normalize=True).to_dict()
        return maps.why_this_item(self.user_label, recs, contrib, interests=interests, top_reasons=2)

    def _label(self, product_id: Hashable) -> str:
        row = self._info.loc[product_id]
        return f"{str(row.get(C.TITLE, product_id))[:60]} · ${float(row[C.PRICE]):.2f}"

    # -- widget callbacks ----------------------------------------------------------------------
    def on_query(self, change: Mapping[str, Any]) -> None:
        """Callback of the search box (on Enter)."""
        self.search(change["new"])

    def on_select(self, change: Mapping[str, Any]) -> None:
        """Callback of the results list: picking a result views it."""
        if change["new"] is not None and not self._filling:
            self.view(change["new"])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"ShopDemo({len(self.catalog):,} products, {len(self.session.clicks)} viewed, k={self.k})"
