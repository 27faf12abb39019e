"""The embedded e-commerce world: products, users, events, reviews, queries and relevance labels.

Everything is generated deterministically from a seed (``generate_world``); ``make_raw`` then adds
the dirt that real logs have, and the workshop-scale raw world ships as a snapshot in
``datasets/workshop`` with a SHA-256 manifest (``write_snapshot`` / ``verify_snapshot``).
Loaders check columns and name the missing one and its file (``load_raw``).

Hidden user preferences (category affinity, price sensitivity, brand loyalty) are ground truth for
simulations in later lessons; the learner never needs them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import columns as C
from .config import DATASETS_DIR, Settings, get_settings
from .taxonomy import CATEGORY_NAMES, CLOTHING, LEAVES, SHOE, Leaf, complements, siblings

START_DATE = pd.Timestamp("2026-01-01")
MANIFEST = "MANIFEST.sha256"

# the columns each table must have (raw and clean share them unless stated)
SCHEMAS: dict[str, tuple[str, ...]] = {
    C.PRODUCTS: (C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.BRAND, C.MODEL_NUMBER, C.CATEGORY_PATH,
                 C.COLOR, C.MATERIAL, C.SIZE, C.PRICE, C.CREATED_AT),
    C.USERS: (C.USER_ID, C.EMAIL, C.COUNTRY, C.AGE_BAND, C.SIGNUP_DATE),
    C.EVENTS: (C.EVENT_ID, C.SESSION_ID, C.USER_ID, C.TIMESTAMP, C.EVENT_TYPE, C.PRODUCT_ID,
               C.QUERY_TEXT, C.POSITION),
    C.REVIEWS: (C.REVIEW_ID, C.USER_ID, C.PRODUCT_ID, C.RATING, C.REVIEW_TEXT, C.TIMESTAMP),
    C.QUERIES: (C.QUERY_ID, C.QUERY, C.QUERY_TYPE, C.SPLIT, C.CATEGORY),
    C.QRELS: (C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL),
    C.USER_PREFERENCES: (C.USER_ID, C.CATEGORY_AFFINITY, C.PRICE_SENSITIVITY, C.BRAND_LOYALTY,
                         C.FAVORITE_BRANDS),
}
SNAPSHOT_TABLES = (C.PRODUCTS, C.USERS, C.EVENTS, C.REVIEWS, C.QUERIES, C.QRELS, C.USER_PREFERENCES)


def end_date(settings: Settings) -> pd.Timestamp:
    """The last moment of the world's event log: anything later is a 'future' timestamp."""
    return START_DATE + pd.Timedelta(days=settings.days)


# =====================================================================================
# products
# =====================================================================================
def _model_prefix(brand: str) -> str:
    letters = [w[0] for w in brand.replace("&", " ").split()]
    return (letters[0] + (letters[1] if len(letters) > 1 else brand[1])).upper()


def _title(leaf: Leaf, brand: str, model: str, feats: list[str], material: str, size: str,
           color: str) -> str:
    parts = [brand]
    if leaf.model_in_title:
        parts.append(model)
    if leaf.audience:
        parts.append(leaf.audience)
    parts += feats
    if material and leaf.size_kind not in (CLOTHING,) and material not in ("Plastic",):
        parts.append(material)
    elif material and leaf.size_kind == CLOTHING:
        parts.append(material)
    parts.append(leaf.noun)
    title = " ".join(parts)
    if size and leaf.size_kind not in (CLOTHING, SHOE):
        title += f", {size}"
    return f"{title} - {color}"


_OPENERS = (
    "The {brand} {noun} is built from {material} for {use}.",
    "Meet the {brand} {noun}: {material} construction made for {use}.",
    "Designed for {use}, this {noun} from {brand} uses durable {material}.",
    "{brand} made this {noun} in {material}, with {use} in mind.",
)
_FEATURE_LINES = (
    "Highlights: {f1} and {f2}.",
    "It stands out for being {f1} and {f2}.",
    "Key features include a {f1} design and a {f2} finish.",
    "Shoppers choose it because it is {f1} and {f2}.",
)
_CLOSERS = (
    "Available in {color}.",
    "This listing is the {color} version.",
    "Color: {color}. Ships in recyclable packaging.",
    "Finished in {color}; backed by a one-year warranty.",
    "",
)


def _description(rng: np.random.Generator, leaf: Leaf, brand: str, feats: list[str],
                 material: str, color: str) -> str:
    noun = leaf.noun.lower()
    use = leaf.uses[rng.integers(len(leaf.uses))]
    extra = [f for f in leaf.features if f not in feats]
    f1 = feats[0].lower()
    f2 = (extra[rng.integers(len(extra))] if extra else feats[-1]).lower()
    lines = [
        _OPENERS[rng.integers(len(_OPENERS))].format(brand=brand, noun=noun,
                                                     material=material.lower() or "quality materials",
                                                     use=use),
        _FEATURE_LINES[rng.integers(len(_FEATURE_LINES))].format(f1=f1, f2=f2),
        _CLOSERS[rng.integers(len(_CLOSERS))].format(color=color.lower()),
    ]
    return " ".join(line for line in lines if line)


def _size_for(rng: np.random.Generator, leaf: Leaf) -> str:
    return leaf.sizes[rng.integers(len(leaf.sizes))] if leaf.sizes else ""


def generate_products(settings: Settings, rng: np.random.Generator) -> pd.DataFrame:
    """Products spread over the leaf categories (Zipf-like sizes), in model families of 1-3
    colour variants that share a model number. Returns the clean table plus hidden columns
    ``quality`` and ``popularity`` (dropped from the raw snapshot)."""
    n = settings.n_products
    weights = 1.0 / np.arange(1, len(LEAVES) + 1) ** 0.35
    weights = weights[rng.permutation(len(LEAVES))]
    counts = rng.multinomial(n, weights / weights.sum())
    rows: list[dict] = []
    used_models: set[str] = set()
    for leaf, count in zip(LEAVES, counts):
        made = 0
        while made < count:
            brand_idx = min(int(rng.zipf(1.6)) - 1, len(leaf.brands) - 1)
            brand = leaf.brands[(brand_idx + rng.integers(2)) % len(leaf.brands)]
            tier = rng.choice([0.65, 1.0, 1.6], p=[0.35, 0.45, 0.2])
            while True:
                model = f"{_model_prefix(brand)}-{rng.integers(100, 9999)}{rng.choice(['', '', 'X', 'S', 'Pro'])}"
                if model not in used_models:
                    used_models.add(model)
                    break
            k = int(rng.integers(1, 3))
            feats = list(rng.choice(leaf.features, size=k, replace=False))
            material = leaf.materials[rng.integers(len(leaf.materials))]
            size = _size_for(rng, leaf)
            base_price = leaf.median_price * tier * np.exp(rng.normal(0, 0.25))
            quality = float(np.clip(rng.normal(0.15 * (tier - 1.0), 0.5), -1.5, 1.5))
            popularity = float(rng.lognormal(0, 1.0))
            n_variants = min(int(rng.choice([1, 1, 2, 3])), count - made)
            colors = rng.choice(leaf.colors, size=min(n_variants, len(leaf.colors)), replace=False)
            for color in colors:
                price = round(max(base_price * np.exp(rng.normal(0, 0.03)), 3.0), 2)
                rows.append({
                    C.TITLE: _title(leaf, brand, model, feats, material, size, str(color)),
                    C.DESCRIPTION: _description(rng, leaf, brand, feats, material, str(color)),
                    C.BRAND: brand, C.MODEL_NUMBER: model, C.CATEGORY: leaf.name,
                    C.CATEGORY_PATH: leaf.path_str, C.COLOR: str(color), C.MATERIAL: material,
                    C.SIZE: size, C.PRICE: float(price),
                    C.CREATED_AT: (START_DATE - pd.Timedelta(days=int(rng.integers(30, 720)))).strftime("%Y-%m-%d"),
                    "features": "|".join(feats), "quality": round(quality, 4),
                    "popularity": round(popularity * float(np.exp(rng.normal(0, 0.2))), 4),
                })
                made += 1
    df = pd.DataFrame(rows)
    df = df.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    df.insert(0, C.PRODUCT_ID, [f"P{i:06d}" for i in range(1, len(df) + 1)])
    return df


# =====================================================================================
# queries and relevance labels
# =====================================================================================
def _typo(rng: np.random.Generator, word: str) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(4)
    if kind == 0:                                   # drop a letter
        return word[:i] + word[i + 1:]
    if kind == 1:                                   # swap neighbours
        return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]
    if kind == 2:                                   # double a letter
        return word[:i] + word[i] + word[i:]
    vowels = "aeiou"                                # wrong vowel (or keyboard slip)
    j = next((j for j in range(i, len(word)) if word[j] in vowels), i)
    repl = vowels[(vowels.find(word[j]) + 1) % 5] if word[j] in vowels else "e"
    return word[:j] + repl + word[j + 1:]


def misspell(text: str, rng: np.random.Generator, n_typos: int = 2) -> str:
    """Put ``n_typos`` typos into the longest words of ``text`` (deterministic given ``rng``)."""
    words = text.split()
    order = sorted(range(len(words)), key=lambda i: -len(words[i]))
    for i in order[:n_typos]:
        words[i] = _typo(rng, words[i])
    out = " ".join(words)
    return out if out != text else text[:-1] if len(text) > 4 else text


@dataclass
class _Labels:
    exact: list[str]
    substitute: list[str]


def _sample(rng: np.random.Generator, ids: np.ndarray | list, k: int) -> list[str]:
    ids = list(ids)
    if len(ids) <= k:
        return ids
    return [ids[i] for i in sorted(rng.choice(len(ids), size=k, replace=False))]


class _QueryMaker:
    """Builds queries of each type and labels them with the ESCI scheme from product facts."""

    def __init__(self, products: pd.DataFrame, rng: np.random.Generator):
        self.p = products
        self.rng = rng
        self.by_leaf = {name: g for name, g in products.groupby(C.CATEGORY, sort=False)}
        self.feats = "|" + products["features"] + "|"

    # -- helpers ---------------------------------------------------------------------
    def _leaf_products(self, leaf: Leaf) -> pd.DataFrame:
        return self.by_leaf.get(leaf.name, self.p.iloc[:0])

    def _matching(self, leaf: Leaf, feature: str | None = None, color: str | None = None,
                  material: str | None = None, max_price: float | None = None) -> pd.Series:
        g = self._leaf_products(leaf)
        mask = pd.Series(True, index=g.index)
        if feature:
            mask &= self.feats.loc[g.index].str.contains(f"|{feature}|", regex=False)
        if color:
            mask &= g[C.COLOR] == color
        if material:
            mask &= g[C.MATERIAL] == material
        if max_price is not None:
            mask &= g[C.PRICE] <= max_price
        return mask

    def _label_rows(self, qid: str, exact: list[str], substitute: list[str], leaf: Leaf) -> list[tuple]:
        rng = self.rng
        sub = _sample(rng, [s for s in substitute if s not in set(exact)], 25)
        sib_ids: list[str] = []
        for sib in siblings(leaf):
            sib_ids += list(self._leaf_products(sib)[C.PRODUCT_ID])
        sub += _sample(rng, sib_ids, 5)
        comp_ids: list[str] = []
        for comp in complements(leaf):
            comp_ids += list(self._leaf_products(comp)[C.PRODUCT_ID])
        comp = _sample(rng, comp_ids, 8)
        related = {leaf.name, *(s.name for s in siblings(leaf)), *(c.name for c in complements(leaf))}
        others = self.p.loc[~self.p[C.CATEGORY].isin(related), C.PRODUCT_ID]
        irr = _sample(rng, others.to_numpy(), 8)
        rows = [(qid, pid, "E") for pid in exact] + [(qid, pid, "S") for pid in sub]
        rows += [(qid, pid, "C") for pid in comp] + [(qid, pid, "I") for pid in irr]
        return rows

    def _seed_product(self, leaf: Leaf | None = None) -> pd.Series:
        if leaf is None:
            return self.p.iloc[int(self.rng.integers(len(self.p)))]
        g = self._leaf_products(leaf)
        return g.iloc[int(self.rng.integers(len(g)))]

    # -- query types -------------------------------------------------------------------
    def keyword(self, leaf: Leaf | None = None) -> tuple[str, Leaf, list[str], list[str]]:
        """'wireless in-ear headphones', 'cast iron frying pan': words that appear in titles."""
        prod = self._seed_product(leaf)
        leaf = _leaf(prod)
        feats = prod["features"].split("|")
        feature = feats[int(self.rng.integers(len(feats)))]
        use_material = self.rng.random() < 0.35 and prod[C.MATERIAL] not in ("Plastic",)
        material = prod[C.MATERIAL] if use_material else None
        words = [feature] + ([material] if material else []) + [leaf.noun]
        text = " ".join(words).lower()
        match = self._matching(leaf, feature=feature, material=material)
        g = self._leaf_products(leaf)
        return text, leaf, list(g.loc[match, C.PRODUCT_ID]), list(g.loc[~match, C.PRODUCT_ID])

    def synonym(self, leaf: Leaf | None = None) -> tuple[str, Leaf, list[str], list[str]]:
        """'earbuds', 'black skillet': only meaning links the query to the products."""
        prod = self._seed_product(leaf)
        leaf = _leaf(prod)
        syn = leaf.synonyms[int(self.rng.integers(len(leaf.synonyms)))]
        g = self._leaf_products(leaf)
        if self.rng.random() < 0.5:
            return syn, leaf, list(g[C.PRODUCT_ID]), []
        color = prod[C.COLOR]
        match = self._matching(leaf, color=color)
        return f"{color.lower()} {syn}", leaf, list(g.loc[match, C.PRODUCT_ID]), list(g.loc[~match, C.PRODUCT_ID])

    def attribute(self, leaf: Leaf | None = None) -> tuple[str, Leaf, list[str], list[str]]:
        """'red dress under $50': a colour and a price bound that a filter can enforce."""
        prod = self._seed_product(leaf)
        leaf = _leaf(prod)
        g = self._leaf_products(leaf)
        color = prod[C.COLOR]
        bound = float(np.ceil(prod[C.PRICE] * self.rng.uniform(1.05, 1.6) / 10.0) * 10)
        noun = leaf.noun.lower()
        if leaf.audience and self.rng.random() < 0.5:
            noun = f"{leaf.audience.lower()} {noun}"
        templates = ("{c} {n} under ${b:.0f}", "{n} {c} under {b:.0f} dollars",
                     "{c} {n} less than ${b:.0f}", "cheap {c} {n} below ${b:.0f}")
        text = templates[int(self.rng.integers(len(templates)))].format(c=color.lower(), n=noun, b=bound)
        match = self._matching(leaf, color=color, max_price=bound)
        return text, leaf, list(g.loc[match, C.PRODUCT_ID]), list(g.loc[~match, C.PRODUCT_ID])

    def model_number(self) -> tuple[str, Leaf, list[str], list[str]]:
        """'sonora sn-4120' or 'SN4120': exact model lookups, all colour variants are Exact."""
        with_model = self.p[self.p[C.CATEGORY].map(lambda c: _LEAF_BY_CAT[c].model_in_title)]
        prod = with_model.iloc[int(self.rng.integers(len(with_model)))]
        leaf = _leaf(prod)
        model = prod[C.MODEL_NUMBER]
        r = self.rng.random()
        if r < 0.4:
            text = f"{prod[C.BRAND].lower()} {model.lower()}"
        elif r < 0.7:
            text = model
        elif r < 0.85:
            text = f"{model.lower()} {leaf.noun.lower()}"
        else:
            text = model.replace("-", "").lower()
        g = self._leaf_products(leaf)
        exact = list(g.loc[g[C.MODEL_NUMBER] == model, C.PRODUCT_ID])
        same_brand = g[(g[C.BRAND] == prod[C.BRAND]) & (g[C.MODEL_NUMBER] != model)]
        return text, leaf, exact, list(same_brand[C.PRODUCT_ID])

    def misspelling(self) -> tuple[str, Leaf, list[str], list[str]]:
        """A keyword or attribute query with typos in its longest words."""
        maker = self.keyword if self.rng.random() < 0.7 else self.attribute
        text, leaf, exact, sub = maker()
        n = 1 if len(text.split()) <= 2 else 2
        return misspell(text, self.rng, n), leaf, exact, sub


_LEAF_BY_CAT = {leaf.name: leaf for leaf in LEAVES}


def _leaf(product: pd.Series) -> Leaf:
    return _LEAF_BY_CAT[product[C.CATEGORY]]


QUERY_TYPE_SHARES = {C.KEYWORD: 0.25, C.SYNONYM: 0.2, C.ATTRIBUTE: 0.2,
                     C.MODEL_NUMBER_QUERY: 0.15, C.MISSPELLING: 0.2}
SPLIT_SHARES = {C.TRAIN: 0.6, C.VALIDATION: 0.15, C.TEST: 0.25}


def generate_queries(products: pd.DataFrame, settings: Settings,
                     rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Queries of five types with ESCI labels; each query text is unique, and splits are by
    query and stratified by type. Returns ``(queries, qrels)``."""
    maker = _QueryMaker(products, rng)
    makers = {C.KEYWORD: maker.keyword, C.SYNONYM: maker.synonym, C.ATTRIBUTE: maker.attribute,
              C.MODEL_NUMBER_QUERY: maker.model_number, C.MISSPELLING: maker.misspelling}
    types = list(QUERY_TYPE_SHARES)
    n_per_type = {t: int(round(settings.n_queries * QUERY_TYPE_SHARES[t])) for t in types}
    queries, qrels, seen = [], [], set()
    for qtype in types:
        made, tries = 0, 0
        while made < n_per_type[qtype] and tries < 50 * n_per_type[qtype]:
            tries += 1
            text, leaf, exact, sub = makers[qtype]()
            if not exact or text in seen:
                continue
            seen.add(text)
            qid = f"Q{len(queries) + 1:05d}"
            queries.append({C.QUERY_ID: qid, C.QUERY: text, C.QUERY_TYPE: qtype, C.CATEGORY: leaf.name})
            qrels += maker._label_rows(qid, exact, sub, leaf)
            made += 1
    q = pd.DataFrame(queries)
    q[C.SPLIT] = ""
    for qtype, idx in q.groupby(C.QUERY_TYPE).groups.items():
        idx = np.array(sorted(idx))[rng.permutation(len(idx))]
        n_train = int(round(len(idx) * SPLIT_SHARES[C.TRAIN]))
        n_val = int(round(len(idx) * SPLIT_SHARES[C.VALIDATION]))
        q.loc[idx[:n_train], C.SPLIT] = C.TRAIN
        q.loc[idx[n_train:n_train + n_val], C.SPLIT] = C.VALIDATION
        q.loc[idx[n_train + n_val:], C.SPLIT] = C.TEST
    qr = pd.DataFrame(qrels, columns=[C.QUERY_ID, C.PRODUCT_ID, C.ESCI_LABEL])
    qr = qr.drop_duplicates([C.QUERY_ID, C.PRODUCT_ID], keep="first").reset_index(drop=True)
    return q[[C.QUERY_ID, C.QUERY, C.QUERY_TYPE, C.SPLIT, C.CATEGORY]], qr


# =====================================================================================
# users, events and reviews
# =====================================================================================
_FIRST = ("alex", "sam", "maria", "li", "noah", "emma", "omar", "sofia", "jin", "lucas", "ana",
          "kofi", "mia", "ivan", "zoe", "ravi", "lea", "tom", "yuki", "nina")
_LAST = ("smith", "garcia", "chen", "muller", "okafor", "rossi", "kim", "novak", "silva", "brown",
         "khan", "tanaka", "dubois", "jones", "lopez")
_COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "CA", "IN", "BR", "JP")
_AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")


def generate_users(settings: Settings, products: pd.DataFrame,
                   rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Users and their hidden preferences. Returns ``(users, user_preferences)``."""
    n = settings.n_users
    n_leaves = len(LEAVES)
    users, prefs = [], []
    for i in range(1, n + 1):
        uid = f"U{i:06d}"
        first, last = _FIRST[rng.integers(len(_FIRST))], _LAST[rng.integers(len(_LAST))]
        users.append({
            C.USER_ID: uid, C.EMAIL: f"{first}.{last}{rng.integers(1, 99)}@example.com",
            C.COUNTRY: _COUNTRIES[rng.integers(len(_COUNTRIES))],
            C.AGE_BAND: _AGE_BANDS[rng.integers(len(_AGE_BANDS))],
            C.SIGNUP_DATE: (START_DATE - pd.Timedelta(days=int(rng.integers(1, 1500)))).strftime("%Y-%m-%d"),
        })
        affinity = rng.dirichlet(np.full(n_leaves, 0.15))
        top = np.argsort(-affinity)[:3]
        fav = {LEAVES[j].name: LEAVES[j].brands[rng.integers(len(LEAVES[j].brands))] for j in top}
        prefs.append({
            C.USER_ID: uid,
            C.CATEGORY_AFFINITY: json.dumps({CATEGORY_NAMES[j]: round(float(affinity[j]), 4)
                                             for j in np.argsort(-affinity) if affinity[j] >= 0.005}),
            C.PRICE_SENSITIVITY: round(float(rng.beta(2, 2)), 4),
            C.BRAND_LOYALTY: round(float(rng.beta(2, 3)), 4),
            C.FAVORITE_BRANDS: json.dumps(fav),
        })
    return pd.DataFrame(users), pd.DataFrame(prefs)


POSITION_BIAS = 1.0 / np.log2(np.arange(2, 12))  # examination probability of positions 1..10


def click_probability(affinity: float, price_ratio: float, price_sensitivity: float,
                      brand_match: bool, brand_loyalty: float, quality: float,
                      position: int) -> float:
    """The world's hidden click model: position bias × attractiveness.

    ``price_ratio`` is the product's price over its category median; ``position`` starts at 1.
    Later lessons' A/B simulator uses this same function as the ground truth.
    """
    utility = (-2.0 + 4.0 * affinity - 1.5 * price_sensitivity * np.log(max(price_ratio, 1e-3))
               + 1.5 * brand_loyalty * float(brand_match) + 0.8 * quality)
    attract = 1.0 / (1.0 + np.exp(-utility))
    return float(POSITION_BIAS[min(position, 10) - 1] * attract)


def _search_text(rng: np.random.Generator, leaf: Leaf, feature: str, color: str, price: float) -> str:
    """What a shopper types in a logged search session (no labels needed)."""
    r = rng.random()
    if r < 0.4:
        return f"{feature} {leaf.noun}".lower()
    if r < 0.7 and leaf.synonyms:
        return leaf.synonyms[rng.integers(len(leaf.synonyms))]
    return f"{color} {leaf.noun} under ${np.ceil(price * 1.3 / 10) * 10:.0f}".lower()


def generate_events(settings: Settings, products: pd.DataFrame, users: pd.DataFrame,
                    prefs: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sessions of searches, impressions, clicks, add-to-carts and purchases, plus reviews of
    purchased products. Impressions come from the old shop ranker (popularity); clicks follow
    ``click_probability``. Returns ``(events, reviews)``."""
    leaves = {}
    for name, g in products.groupby(C.CATEGORY, sort=False):
        leaves[name] = {
            "id": g[C.PRODUCT_ID].to_numpy(), "price": g[C.PRICE].to_numpy(float),
            "brand": g[C.BRAND].to_numpy(), "quality": g["quality"].to_numpy(float),
            "color": g[C.COLOR].to_numpy(), "feature": g["features"].str.split("|").str[0].to_numpy(),
            "weight": (g["popularity"] / g["popularity"].sum()).to_numpy(),
            "median": float(g[C.PRICE].median()),
        }
    total_seconds = settings.days * 86400
    events: list[tuple] = []
    reviews: list[tuple] = []
    session_no = 0
    for user_id, aff_json, sens, loyalty, fav_json in zip(
            users[C.USER_ID], prefs[C.CATEGORY_AFFINITY], prefs[C.PRICE_SENSITIVITY],
            prefs[C.BRAND_LOYALTY], prefs[C.FAVORITE_BRANDS]):
        affinity = json.loads(aff_json)
        fav_brands = json.loads(fav_json)
        cats = list(affinity)
        probs = np.array([affinity[c] for c in cats])
        probs = probs / probs.sum()
        n_sessions = 1 + int(rng.poisson(settings.sessions_per_user - 1))
        starts = np.sort(rng.integers(0, total_seconds - 3600, size=n_sessions))
        for start in starts:
            session_no += 1
            sid = f"S{session_no:07d}"
            t = int(start)
            leaf_name = cats[int(rng.choice(len(cats), p=probs))]
            leaf, g = _LEAF_BY_CAT[leaf_name], leaves[leaf_name]
            if rng.random() < 0.6:  # a search session
                j = int(rng.integers(len(g["id"])))
                text = _search_text(rng, leaf, g["feature"][j], g["color"][j], g["price"][j])
                events.append((sid, user_id, t, C.SEARCH, "", text, 0))
                t += int(rng.integers(1, 4))
            k = min(10, len(g["id"]))
            shown = rng.choice(len(g["id"]), size=k, replace=False, p=g["weight"])
            for pos, j in enumerate(shown, start=1):
                events.append((sid, user_id, t, C.IMPRESSION, g["id"][j], "", pos))
            for pos, j in enumerate(shown, start=1):
                p_click = click_probability(
                    affinity.get(leaf_name, 0.0), g["price"][j] / g["median"], sens,
                    fav_brands.get(leaf_name) == g["brand"][j], loyalty, g["quality"][j], pos)
                if rng.random() >= p_click:
                    continue
                t += int(rng.integers(5, 90))
                events.append((sid, user_id, t, C.CLICK, g["id"][j], "", pos))
                if rng.random() < 0.3 + 0.2 * g["quality"][j]:
                    t += int(rng.integers(10, 120))
                    events.append((sid, user_id, t, C.ADD_TO_CART, g["id"][j], "", pos))
                    if rng.random() < 0.55:
                        t += int(rng.integers(30, 300))
                        events.append((sid, user_id, t, C.PURCHASE, g["id"][j], "", pos))
                        if rng.random() < 0.7:
                            reviews.append(_review(rng, user_id, g, j, leaf, t + 86400 * int(rng.integers(2, 20))))
    ev = pd.DataFrame(events, columns=[C.SESSION_ID, C.USER_ID, C.TIMESTAMP, C.EVENT_TYPE,
                                       C.PRODUCT_ID, C.QUERY_TEXT, C.POSITION])
    ev[C.TIMESTAMP] = START_DATE + pd.to_timedelta(ev[C.TIMESTAMP], unit="s")
    ev = ev.sort_values([C.TIMESTAMP, C.SESSION_ID], kind="stable").reset_index(drop=True)
    ev.insert(0, C.EVENT_ID, [f"E{i:08d}" for i in range(1, len(ev) + 1)])
    rv = pd.DataFrame(reviews, columns=[C.USER_ID, C.PRODUCT_ID, C.RATING, C.REVIEW_TEXT, C.TIMESTAMP])
    rv[C.TIMESTAMP] = START_DATE + pd.to_timedelta(rv[C.TIMESTAMP], unit="s")
    rv = rv[rv[C.TIMESTAMP] <= end_date(settings)].reset_index(drop=True)
    rv.insert(0, C.REVIEW_ID, [f"R{i:07d}" for i in range(1, len(rv) + 1)])
    return ev, rv


_POSITIVE = ("Love this {noun}, works exactly as described.", "Great {noun} for {use}.",
             "Excellent quality, would buy this {noun} again.", "Five stars: the {color} looks even better in person.")
_NEUTRAL = ("Decent {noun} for the price.", "It does the job for {use}, nothing special.",
            "Okay overall, the {color} is a bit different from the photos.")
_NEGATIVE = ("Disappointed, the {noun} broke after two weeks.", "Not good for {use}, returned it.",
             "Poor quality for the price, the {color} faded quickly.")


def _review(rng: np.random.Generator, user_id: str, g: dict, j: int, leaf: Leaf, when: int) -> tuple:
    rating = int(np.clip(round(3.6 + 1.3 * g["quality"][j] + rng.normal(0, 0.8)), 1, 5))
    pool = _POSITIVE if rating >= 4 else _NEUTRAL if rating == 3 else _NEGATIVE
    text = pool[rng.integers(len(pool))].format(noun=leaf.noun.lower(), color=g["color"][j].lower(),
                                                use=leaf.uses[rng.integers(len(leaf.uses))])
    return (user_id, g["id"][j], rating, text, when)


# =====================================================================================
# the whole world, and its dirty raw version
# =====================================================================================
def generate_world(settings: Settings | None = None) -> dict[str, pd.DataFrame]:
    """Generate the clean world of a profile. Keys: products, users, events, reviews, queries,
    qrels, user_preferences. Products keep hidden columns ``features``, ``quality`` and
    ``popularity``. Same settings, same tables."""
    settings = settings or get_settings()
    rng = np.random.default_rng(settings.seed)
    products = generate_products(settings, rng)
    queries, qrels = generate_queries(products, settings, np.random.default_rng(settings.seed + 1))
    users, prefs = generate_users(settings, products, np.random.default_rng(settings.seed + 2))
    events, reviews = generate_events(settings, products, users, prefs,
                                      np.random.default_rng(settings.seed + 4))
    return {C.PRODUCTS: products, C.USERS: users, C.EVENTS: events, C.REVIEWS: reviews,
            C.QUERIES: queries, C.QRELS: qrels, C.USER_PREFERENCES: prefs}


from .dirt import make_raw  # noqa: E402  (the dirt module needs the generators above)


# =====================================================================================
# snapshot: write, verify, load
# =====================================================================================
def snapshot_dir(profile: str = "workshop") -> Path:
    return DATASETS_DIR / profile


def _csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_snapshot(raw: dict[str, pd.DataFrame], directory: Path) -> dict[str, str]:
    """Write the raw tables as CSV with a SHA-256 manifest, atomically: the files appear in
    ``directory`` together or not at all. Returns ``{file name: sha256}``."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        hashes = {}
        for table in SNAPSHOT_TABLES:
            data = _csv_bytes(raw[table])
            (tmp / f"{table}.csv").write_bytes(data)
            hashes[f"{table}.csv"] = sha256_bytes(data)
        (tmp / MANIFEST).write_text("".join(f"{h}  {name}\n" for name, h in hashes.items()))
        for extra in ("DATASHEET.md",):  # keep hand-written files of an existing snapshot
            if (directory / extra).exists():
                shutil.copy2(directory / extra, tmp / extra)
        old = directory.with_name(f".{directory.name}-old")
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return hashes


def read_manifest(directory: Path) -> dict[str, str]:
    """``{file name: sha256}`` from a snapshot's manifest."""
    lines = (Path(directory) / MANIFEST).read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines if line)}


def verify_snapshot(directory: Path | None = None) -> dict[str, bool]:
    """Check every file of a snapshot against its manifest: ``{file name: ok}``."""
    directory = Path(directory or snapshot_dir())
    return {name: (directory / name).exists()
            and sha256_bytes((directory / name).read_bytes()) == digest
            for name, digest in read_manifest(directory).items()}


class SchemaError(ValueError):
    """A table lacks a column it must have, or is empty; the message names column and file."""


def validate_columns(df: pd.DataFrame, table: str, source: str = "<DataFrame>") -> pd.DataFrame:
    """Raise ``SchemaError`` naming the missing column(s) of ``table`` and the file they came
    from; refuse an empty table. Returns ``df`` unchanged."""
    missing = [col for col in SCHEMAS[table] if col not in df.columns]
    if missing:
        extra = sorted(set(df.columns) - set(SCHEMAS[table]))
        hint = f" (unexpected columns present: {extra} - renamed?)" if extra else ""
        raise SchemaError(f"table {table!r} from {source} is missing column(s) {missing}{hint}")
    if df.empty:
        raise SchemaError(f"table {table!r} from {source} is empty")
    return df


def read_table(path: Path, table: str) -> pd.DataFrame:
    """Read one CSV table as strings (raw data is text until cleaned) and check its columns."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table {table!r}: no file at {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    return validate_columns(df, table, str(path))


def generator_version() -> str:
    """A short hash of the generator's code: cached worlds are rebuilt when the code changes."""
    from . import dirt, taxonomy

    code = b"".join(Path(m.__file__).read_bytes() for m in (dirt, taxonomy)) + Path(__file__).read_bytes()
    return hashlib.sha256(code).hexdigest()[:12]


def load_raw(profile: str | None = None, directory: Path | None = None,
             verify: bool = True) -> dict[str, pd.DataFrame]:
    """Load the raw (dirty) world of a profile.

    The workshop profile reads the shipped snapshot (its hashes checked when ``verify``);
    other profiles are generated from their seed and cached under ``course_lib.config.cache_dir()``.
    Every table is read as text, exactly as a raw export would be.
    """
    settings = get_settings(profile)
    if directory is None:
        directory = snapshot_dir(settings.profile)
        if not (directory / MANIFEST).exists():
            from .config import cache_dir
            directory = cache_dir() / "worlds" / f"{settings.profile}-seed{settings.seed}-{generator_version()}"
            if not (directory / MANIFEST).exists():
                write_snapshot(make_raw(generate_world(settings), settings), directory)
    directory = Path(directory)
    if verify:
        bad = [name for name, ok in verify_snapshot(directory).items() if not ok]
        if bad:
            raise ValueError(f"snapshot {directory} fails its SHA-256 check for {bad}; "
                             "regenerate it with `python -m course_lib.data --write`")
    return {table: read_table(directory / f"{table}.csv", table) for table in SNAPSHOT_TABLES}


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.data [--profile P] [--write | --check]``."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--profile", default="workshop")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="regenerate the snapshot in datasets/")
    group.add_argument("--check", action="store_true", help="regenerate in memory, compare hashes")
    args = parser.parse_args(argv)
    settings = get_settings(args.profile)
    raw = make_raw(generate_world(settings), settings)
    if args.write:
        hashes = write_snapshot(raw, snapshot_dir(settings.profile))
        for name, digest in hashes.items():
            print(f"{digest}  {name}  ({len(raw[name[:-4]])} rows)")
        return 0
    expected = read_manifest(snapshot_dir(settings.profile))
    got = {f"{t}.csv": sha256_bytes(_csv_bytes(raw[t])) for t in SNAPSHOT_TABLES}
    diff = sorted(name for name in expected if expected[name] != got.get(name))
    print("snapshot matches its seed" if not diff else f"differs: {diff}")
    return 1 if diff else 0


if __name__ == "__main__":
    raise SystemExit(main())
