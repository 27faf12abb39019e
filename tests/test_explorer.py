"""course_lib.explorer: the widget's callbacks, driven without a browser."""
from __future__ import annotations

import pytest

from course_lib import columns as C
from course_lib.explorer import PROMPT, Explorer
from test_explain import fitted  # noqa: F401  (the module-scoped smoke fixture)


@pytest.fixture()
def explorer(fitted):  # noqa: F811
    return Explorer(fitted["rec"], k=4)


def test_picking_a_user_shows_their_items_and_map(explorer, fitted):  # noqa: F811
    rec = fitted["rec"]
    assert explorer.message.value == PROMPT and explorer.map_source == ""
    first, second = rec.users[:2]
    explorer.user.value = first
    table, source = explorer.results.value, explorer.map_source
    items = rec.recommend(first, 4)
    assert all(f"item/{pid}" in source for pid in items[C.PRODUCT_ID])
    assert items[C.TITLE].iloc[0][:20] in table
    assert "<svg" in explorer.map.value or "<pre>" in explorer.map.value
    explorer.user.value = second
    other = rec.recommend(second, 4)
    assert explorer.map_source != source and explorer.results.value != table
    assert all(f"item/{pid}" in explorer.map_source for pid in other[C.PRODUCT_ID])
    assert second in explorer.map_source and first not in explorer.map_source
    assert explorer.table[C.REASON].notna().all()


def test_typing_a_query_shows_matches_and_the_query_map(explorer, fitted):  # noqa: F811
    explorer.query.value = "wireless earbuds"
    hits = fitted["rec"].search("wireless earbuds", 4)
    assert all(f"item/{pid}" in explorer.map_source for pid in hits[C.PRODUCT_ID])
    assert "wireless earbuds" in explorer.map_source and "matches" in explorer.message.value


def test_empty_query_and_unknown_user_show_a_message(explorer):
    explorer.query.value = "earbuds"
    explorer.query.value = "  "
    assert "query is empty" in explorer.message.value
    assert explorer.results.value == "" and explorer.map_source == ""
    explorer.on_user({"new": "u_nobody"})
    assert "unknown user id" in explorer.message.value and "u_nobody" in explorer.message.value
    assert explorer.map_source == ""
    explorer.on_user({"new": None})
    assert explorer.message.value == f"<b>{PROMPT}</b>"


def test_the_widget_displays(explorer):
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "users" in repr(explorer)
