"""course_lib.data: the embedded world is deterministic, realistic where it matters, and dirty."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from course_lib import columns as C
from course_lib import data
from course_lib.config import get_settings
from course_lib.dirt import make_raw
from course_lib.taxonomy import LEAF_BY_NAME, LEAVES


@pytest.fixture(scope="module")
def smoke():
    settings = get_settings("smoke")
    world = data.generate_world(settings)
    return settings, world, make_raw(world, settings)


def _hashes(tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    return {name: data.sha256_bytes(data._csv_bytes(df)) for name, df in tables.items()}


def test_same_seed_same_world_other_seed_other_world(smoke):
    settings, world, raw = smoke
    again = data.generate_world(settings)
    assert _hashes(world) == _hashes(again)
    assert _hashes(make_raw(again, settings)) == _hashes(raw)
    other = data.generate_world(get_settings("smoke", seed=7))
    assert _hashes(other)[C.PRODUCTS] != _hashes(world)[C.PRODUCTS]


def test_taxonomy_has_enough_leaves_two_to_three_levels_deep():
    assert len(LEAVES) >= 20
    assert all(2 <= len(leaf.path) <= 3 for leaf in LEAVES)


def test_products_are_realistic(smoke):
    _, world, _ = smoke
    p = world[C.PRODUCTS]
    assert p[C.PRODUCT_ID].is_unique
    assert p[C.CATEGORY].nunique() >= 20
    assert (p[C.PRICE] > 0).all()
    for col in (C.TITLE, C.DESCRIPTION, C.BRAND, C.COLOR, C.MATERIAL):
        assert p[col].str.len().gt(0).all(), col
    # a colour variant family shares a model number
    assert p[C.MODEL_NUMBER].value_counts().max() >= 2
    # titles name their leaf's noun and colour
    assert all(LEAF_BY_NAME[c].noun in t and col in t
               for t, c, col in zip(p[C.TITLE], p[C.CATEGORY], p[C.COLOR]))


def test_queries_cover_every_type_and_split_with_disjoint_splits(smoke):
    _, world, _ = smoke
    q = world[C.QUERIES]
    assert q[C.QUERY_ID].is_unique and q[C.QUERY].is_unique
    counts = q.groupby([C.QUERY_TYPE, C.SPLIT]).size()
    for qtype in C.QUERY_TYPES:
        for split in C.SPLITS:
            assert counts.get((qtype, split), 0) > 0, (qtype, split)
    ids = {s: set(q.loc[q[C.SPLIT] == s, C.QUERY_ID]) for s in C.SPLITS}
    assert not (ids[C.TRAIN] & ids[C.VALIDATION]) and not (ids[C.TRAIN] & ids[C.TEST])
    assert not (ids[C.VALIDATION] & ids[C.TEST])


def test_qrels_are_valid_esci_with_an_exact_match_per_query(smoke):
    _, world, _ = smoke
    qr, q, p = world[C.QRELS], world[C.QUERIES], world[C.PRODUCTS]
    assert set(qr[C.ESCI_LABEL]) == set(C.ESCI_LABELS)
    assert set(qr[C.PRODUCT_ID]) <= set(p[C.PRODUCT_ID])
    assert set(qr[C.QUERY_ID]) == set(q[C.QUERY_ID])
    exact_per_query = qr[qr[C.ESCI_LABEL] == "E"].groupby(C.QUERY_ID).size()
    assert exact_per_query.reindex(q[C.QUERY_ID]).fillna(0).min() >= 1
    assert not qr.duplicated([C.QUERY_ID, C.PRODUCT_ID]).any()


def _exact(world, qtype):
    q, qr, p = world[C.QUERIES], world[C.QRELS], world[C.PRODUCTS]
    merged = qr[qr[C.ESCI_LABEL] == "E"].merge(q, on=C.QUERY_ID).merge(p, on=C.PRODUCT_ID)
    return merged[merged[C.QUERY_TYPE] == qtype]


def test_synonym_queries_share_no_word_with_their_products(smoke):
    _, world, _ = smoke
    rows = _exact(world, C.SYNONYM)
    colours = {c.lower() for leaf in LEAVES for c in leaf.colors}
    for query, title, desc in zip(rows[C.QUERY], rows[C.TITLE], rows[C.DESCRIPTION]):
        text = f"{title} {desc}".lower()
        content = [w for w in query.split() if w not in colours and w not in {"for", "of"}]
        assert content and not any(re.search(rf"\b{re.escape(w)}\b", text) for w in content), query


def test_attribute_queries_label_only_matching_products_exact(smoke):
    _, world, _ = smoke
    rows = _exact(world, C.ATTRIBUTE)
    assert len(rows) > 0
    for query, color, price in zip(rows[C.QUERY], rows[C.COLOR], rows[C.PRICE]):
        bound = float(re.search(r"\$?(\d+)( dollars)?$", query).group(1))
        assert color.lower() in query and price <= bound, (query, color, price)


def test_model_number_queries_find_their_model(smoke):
    _, world, _ = smoke
    rows = _exact(world, C.MODEL_NUMBER_QUERY)
    for query, model in zip(rows[C.QUERY], rows[C.MODEL_NUMBER]):
        assert model.replace("-", "").lower() in query.replace("-", "").lower()


def test_misspellings_are_not_real_words_of_the_catalogue(smoke):
    _, world, _ = smoke
    q = world[C.QUERIES]
    vocab = set(" ".join(world[C.PRODUCTS][C.TITLE]).lower().split())
    miss = q[q[C.QUERY_TYPE] == C.MISSPELLING][C.QUERY]
    typo_share = np.mean([any(w not in vocab and w.isalpha() and len(w) > 3 for w in s.split()) for s in miss])
    assert typo_share > 0.8


def test_hidden_preferences_are_distributions(smoke):
    import json

    _, world, _ = smoke
    prefs = world[C.USER_PREFERENCES]
    totals = prefs[C.CATEGORY_AFFINITY].map(lambda s: sum(json.loads(s).values()))
    assert totals.between(0.9, 1.0001).all()
    assert prefs[C.PRICE_SENSITIVITY].between(0, 1).all()


def test_events_follow_the_funnel(smoke):
    _, world, _ = smoke
    e = world[C.EVENTS]
    counts = e[C.EVENT_TYPE].value_counts()
    assert counts[C.IMPRESSION] > counts[C.CLICK] > counts[C.ADD_TO_CART] >= counts[C.PURCHASE] > 0
    # clicks fall with position (position bias)
    clicks = e[e[C.EVENT_TYPE] == C.CLICK][C.POSITION].value_counts()
    assert clicks.get(1, 0) > clicks.get(10, 0)
    assert e[C.TIMESTAMP].max() <= data.end_date(get_settings("smoke"))


def test_raw_world_carries_every_kind_of_dirt(smoke):
    _, world, raw = smoke
    p, e, r, u = raw[C.PRODUCTS], raw[C.EVENTS], raw[C.REVIEWS], raw[C.USERS]
    assert p[C.PRODUCT_ID].duplicated().any()
    assert p[C.PRICE].str.startswith("$").any() and p[C.PRICE].str.startswith("-").any()
    assert (p[C.PRICE] == "").any() and (p[C.PRICE] == "N/A").any()
    assert p[C.DESCRIPTION].str.contains("<p>|<div", regex=True).any()
    assert p[C.TITLE].map(lambda t: t.isupper()).any()
    assert p[C.SIZE].str.contains(r"\d(?:\.\d)?L$|ml$", regex=True).any()
    assert p[C.CATEGORY_PATH].str.contains("/").any()
    assert e.duplicated().any()
    assert e[C.TIMESTAMP].str.startswith("2031").any()
    assert e[C.TIMESTAMP].str.fullmatch(r"\d{10}").any()
    assert e[C.USER_ID].str.startswith("U9").any()          # bots
    assert r[C.REVIEW_TEXT].str.contains("@").any()
    assert r[C.REVIEW_TEXT].str.contains(r"\(555\)|555-", regex=True).any()
    assert (r[C.RATING] == "6").any() or (r[C.RATING] == "0").any()
    assert u[C.USER_ID].duplicated().any()
    for table in (C.PRODUCTS, C.USERS, C.EVENTS, C.REVIEWS):
        assert all(raw[table].dtypes == object) or all(str(t) in ("str", "string", "object") for t in raw[table].dtypes)


def test_shipped_snapshot_regenerates_from_its_seed():
    """The datasets/workshop snapshot is exactly what the seed produces (hashes compared)."""
    settings = get_settings("workshop")
    raw = make_raw(data.generate_world(settings), settings)
    manifest = data.read_manifest(data.snapshot_dir("workshop"))
    assert manifest == {f"{t}.csv": data.sha256_bytes(data._csv_bytes(raw[t])) for t in data.SNAPSHOT_TABLES}
    assert all(data.verify_snapshot().values())
    products = raw[C.PRODUCTS][C.PRODUCT_ID].nunique()
    assert products >= 5000
    size = sum(f.stat().st_size for f in data.snapshot_dir("workshop").iterdir())
    assert size <= 20 * 2**20


def test_verify_snapshot_detects_a_changed_byte(tmp_path):
    copy = tmp_path / "snap"
    shutil.copytree(data.snapshot_dir("workshop"), copy)
    path = copy / "queries.csv"
    path.write_bytes(path.read_bytes().replace(b"Q00001", b"Q00009", 1))
    result = data.verify_snapshot(copy)
    assert result["queries.csv"] is False and result["products.csv"] is True
    with pytest.raises(ValueError, match="queries.csv"):
        data.load_raw("workshop", directory=copy)


def test_missing_or_renamed_column_names_column_and_file(tmp_path):
    path = tmp_path / "products.csv"
    df = pd.DataFrame({c: ["x"] for c in data.SCHEMAS[C.PRODUCTS]}).rename(columns={C.PRICE: "cost"})
    df.to_csv(path, index=False)
    with pytest.raises(data.SchemaError, match=r"\['price'\].*renamed") as err:
        data.read_table(path, C.PRODUCTS)
    assert str(path) in str(err.value)


def test_empty_table_is_refused(tmp_path):
    path = tmp_path / "events.csv"
    pd.DataFrame(columns=list(data.SCHEMAS[C.EVENTS])).to_csv(path, index=False)
    with pytest.raises(data.SchemaError, match="'events'.*is empty"):
        data.read_table(path, C.EVENTS)


def test_snapshot_write_is_atomic(tmp_path, monkeypatch, smoke):
    settings, _, raw = smoke
    target = tmp_path / "snap"
    data.write_snapshot(raw, target)
    before = {f.name: f.read_bytes() for f in target.iterdir()}
    calls = {"n": 0}
    real = data._csv_bytes

    def failing(df):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(df)

    monkeypatch.setattr(data, "_csv_bytes", failing)
    changed = dict(raw)
    changed[C.QUERIES] = raw[C.QUERIES].head(3)
    with pytest.raises(OSError, match="disk full"):
        data.write_snapshot(changed, target)
    assert {f.name: f.read_bytes() for f in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["snap"]  # no temp folder left behind


def test_load_raw_generates_and_caches_other_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    raw = data.load_raw("smoke")
    assert set(raw) == set(data.SNAPSHOT_TABLES)
    cached = list((tmp_path / "worlds").iterdir())
    assert len(cached) == 1 and (cached[0] / data.MANIFEST).exists()
