"""An interactive explorer (ipywidgets): pick a user or type a query, see the results and their map.

    explorer = Explorer(recommender)      # an explain.ExplainedRecommender
    explorer                              # displays the widget in Jupyter / Colab

The callbacks are plain methods that set widget values, so they run without a browser::

    explorer.user.value = "u_0123"        # -> on_user: the table and the "why this item?" map
    explorer.query.value = "earbuds"      # -> on_query: the matches and the query map
    explorer.results.value, explorer.map_source, explorer.message.value

Empty queries and unknown user ids show a message instead of raising.
"""
from __future__ import annotations

import html
from collections.abc import Hashable, Mapping
from typing import Any

import pandas as pd

from . import columns as C
from .explain import ExplainedRecommender, top_reasons
from .mindmap import INSTALL_HINT, MindMap, dot_available, to_svg

PROMPT = "Pick a user or type a query (then press Enter)."


def results_html(table: pd.DataFrame, columns: tuple[str, ...] = (C.RANK, C.TITLE, C.CATEGORY, C.PRICE, C.SCORE,
                                                                  C.REASON)) -> str:
    """A small HTML table of the ``columns`` of ``table`` that it has (numbers rounded)."""
    cols = [c for c in columns if c in table.columns]
    shown = table[cols].copy()
    for c in (C.SCORE, C.PRICE):
        if c in shown.columns:
            shown[c] = shown[c].map(lambda v: f"{float(v):.2f}")
    return shown.to_html(index=False, escape=True, border=0, classes="explorer-results")


def map_html(mind_map: MindMap) -> str:
    """The map as inline SVG, or its DOT source with the install hint when ``dot`` is missing."""
    if dot_available():
        return to_svg(mind_map)
    return f"<pre>{html.escape(INSTALL_HINT)}\n\n{html.escape(mind_map.source)}</pre>"


class Explorer:
    """Widgets: ``user`` (Dropdown), ``query`` (Text), ``message``, ``results`` and ``map`` (HTML).

    ``users``: the ids offered (default: every user the recommender serves); ``k``: items shown.
    ``labels`` optionally maps user ids to display names.
    """

    def __init__(self, recommender: ExplainedRecommender, *, k: int = 5, users: list | None = None,
                 labels: Mapping[Hashable, str] | None = None):
        import ipywidgets as W

        self.recommender, self.k = recommender, k
        self.labels = dict(labels or {})
        ids = list(users) if users is not None else recommender.users
        self.user = W.Dropdown(options=[("(pick a user)", None)] + [(self.labels.get(u, str(u)), u) for u in ids],
                               value=None, description="User")
        self.query = W.Text(value="", placeholder="e.g. wireless earbuds under $50", description="Query",
                            continuous_update=False)
        self.message = W.HTML(value=PROMPT)
        self.results = W.HTML(value="")
        self.map = W.HTML(value="")
        self.current_map: MindMap | None = None
        self.table: pd.DataFrame | None = None
        self.user.observe(self.on_user, names="value")
        self.query.observe(self.on_query, names="value")
        self.widget = W.VBox([W.HBox([self.user, self.query]), self.message, self.results, self.map])

    @property
    def map_source(self) -> str:
        """The DOT source of the map shown ('' when none)."""
        return self.current_map.source if self.current_map is not None else ""

    def _clear(self, message: str) -> None:
        self.message.value = f"<b>{html.escape(message)}</b>"
        self.results.value, self.map.value = "", ""
        self.current_map, self.table = None, None

    def _show(self, message: str, table: pd.DataFrame, mind_map: MindMap) -> None:
        self.message.value = html.escape(message)
        self.table, self.current_map = table, mind_map
        self.results.value = results_html(table)
        self.map.value = map_html(mind_map)

    def show_user(self, user_id: Hashable) -> None:
        """The user's top ``k`` with each item's top reason, and their "why this item?" map."""
        if user_id is None:
            self._clear(PROMPT)
            return
        try:
            recs = self.recommender.recommend(user_id, self.k)
        except KeyError as err:
            self._clear(err.args[0] if err.args else f"unknown user id {user_id!r}")
            return
        contrib = self.recommender.explain(user_id, self.k)
        top = top_reasons(contrib, 1).set_index(C.PRODUCT_ID)[C.REASON]
        table = recs.assign(**{C.REASON: recs[C.PRODUCT_ID].map(top)})
        name = self.labels.get(user_id, str(user_id))
        self._show(f"Top {len(recs)} for {name}, each with its strongest reason.", table,
                   self.recommender.why_map(user_id, self.k, user_label=name))

    def show_query(self, query: str) -> None:
        """The query's top ``k`` matches and its query understanding map."""
        try:
            matches = self.recommender.search(query, self.k)
        except ValueError as err:
            self._clear(str(err))
            return
        self._show(f"Top {len(matches)} matches for “{query.strip()}”.", matches,
                   self.recommender.query_map(query, self.k))

    def on_user(self, change: Mapping[str, Any]) -> None:
        """Callback of the user Dropdown."""
        self.show_user(change["new"])

    def on_query(self, change: Mapping[str, Any]) -> None:
        """Callback of the query Text (on Enter)."""
        self.show_query(change["new"])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"Explorer({len(self.user.options) - 1} users, k={self.k})"
