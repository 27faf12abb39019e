"""Online experiments in the embedded world: randomise users, show each arm's recommendations,
let the world's hidden preferences decide the clicks and purchases, then analyse.

* :class:`Shop`: the world's hidden truth for simulation. Users' category affinity, price
  sensitivity, brand loyalty and favourite brands (the ``user_preferences`` table) and products'
  hidden quality. Clicks follow :func:`course_lib.data.click_probability` with its position
  bias :data:`course_lib.data.POSITION_BIAS`; a click becomes a purchase with the world's funnel
  (:func:`purchase_probability`, the one ``data.generate_events`` logs). :func:`load_shop`
  builds it for a profile.
* A **recommender** is a tidy run DataFrame (``user_id``, ``product_id``, ``score`` or ``rank``,
  rank 1 best) or a callable ``recommend(user_ids, k) -> run``. Simple ones for the lesson:
  :func:`popularity_recommender`, :func:`category_recommender`, :func:`random_recommender`.
* :func:`assign_variants` randomises users by a salted hash (deterministic, about 50/50), and
  :func:`srm_check` tests the split for a sample-ratio mismatch.
* :func:`run_experiment` runs one A/B test and returns one row per user (``user_id``,
  ``variant``, ``day``, ``visits``, ``impressions``, ``clicks``, ``purchases``, ``revenue``);
  :func:`summarize_experiment` and :func:`analyze_experiment` give the metrics per variant and the
  differences with confidence intervals and p-values.
* :func:`simulate_experiments` repeats an experiment many times, vectorised with numpy, and
  records the test after every day: :func:`false_positive_rates` (A/A tests, peeking) and
  :func:`rejection_rate` (power) read it.
* :func:`split_last_click` and :func:`offline_metrics`: the offline view (hit@k, ndcg@k on each
  user's held-out last click) to compare with the online result.

Metrics (per variant; the user is the unit of randomisation, so per-user rates are the ones the
z-test may treat as independent trials):

* ``ctr`` = clicks / impressions, a ratio metric (its CI comes from a bootstrap over users);
* ``user_click_rate`` = share of users with at least one click;
* ``conversion`` = share of users with at least one purchase (per user, not per visit);
* ``revenue_per_user`` = total revenue / users assigned, users without a purchase counting 0.
"""
from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import pandas as pd

from . import columns as C
from . import data, stats
from .evaluation import evaluate, sort_run

Recommender = Union[pd.DataFrame, Callable[[list[str], int], pd.DataFrame]]

# the purchase funnel of data.generate_events: a click is added to the cart with probability
# 0.3 + 0.2 * quality, and a cart becomes a purchase with probability 0.55
ADD_TO_CART_BASE, ADD_TO_CART_QUALITY, CART_TO_PURCHASE = 0.3, 0.2, 0.55

RUN = "run"          # simulation number in simulate_experiments
# simulated experiments per profile (A/A tests, peeking, power): enough for a rate to +-2 points
SIMULATIONS = {"smoke": 200, "workshop": 500, "full": 2000}
Z = "z"
P_VALUE = "p_value"
DEFAULT_SALT = "ab-test-05"


def purchase_probability(quality: Any) -> np.ndarray:
    """P(purchase | click) of the world's funnel, from a product's hidden quality."""
    add = np.clip(ADD_TO_CART_BASE + ADD_TO_CART_QUALITY * np.asarray(quality, dtype=float), 0, 1)
    return add * CART_TO_PURCHASE


def _require(df: Any, columns: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a DataFrame, got {type(df).__name__}")
    missing = [col for col in columns if col not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(df.columns)}")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _examples(values: Any, n: int = 3) -> list:
    return list(values)[:n]


# =============================================================================================
# the world's hidden truth
# =============================================================================================
@dataclass
class Shop:
    """Users' hidden preferences and products' hidden attributes, as arrays for fast simulation.

    Build it with :func:`load_shop` (a profile's world) or :meth:`from_tables` (any tables).
    """

    user_ids: np.ndarray          # [U] str
    product_ids: np.ndarray       # [P] str
    categories: tuple[str, ...]
    affinity: np.ndarray          # [U, n_categories]
    price_sensitivity: np.ndarray  # [U]
    brand_loyalty: np.ndarray     # [U]
    favorite_brand: np.ndarray    # [U, n_categories] brand code, -1 for none
    product_category: np.ndarray  # [P] category code
    product_brand: np.ndarray     # [P] brand code
    price: np.ndarray             # [P]
    price_ratio: np.ndarray       # [P] price / median price of its category
    quality: np.ndarray           # [P]

    def __post_init__(self) -> None:
        self._users = {uid: i for i, uid in enumerate(self.user_ids.tolist())}
        self._products = {pid: i for i, pid in enumerate(self.product_ids.tolist())}

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @classmethod
    def from_tables(cls, products: pd.DataFrame, preferences: pd.DataFrame,
                    category_medians: Mapping[str, float] | None = None) -> "Shop":
        """A shop from a products table with hidden columns (``product_id``, ``category``,
        ``brand``, ``price``, ``quality``) and a ``user_preferences`` table (JSON columns as in
        ``data.generate_users``). Medians default to the products' median price per category."""
        _require(products, [C.PRODUCT_ID, C.CATEGORY, C.BRAND, C.PRICE, "quality"], "products")
        _require(preferences, data.SCHEMAS[C.USER_PREFERENCES], "preferences")
        if products.empty or preferences.empty:
            raise ValueError("a shop needs at least one product and one user")
        categories = tuple(sorted(products[C.CATEGORY].unique()))
        cat_code = {c: i for i, c in enumerate(categories)}
        brands = sorted(set(products[C.BRAND]))
        brand_code = {b: i for i, b in enumerate(brands)}
        medians = dict(products.groupby(C.CATEGORY)[C.PRICE].median())
        medians.update(category_medians or {})
        price = products[C.PRICE].to_numpy(float)
        n_users = len(preferences)
        affinity = np.zeros((n_users, len(categories)))
        favorite = np.full((n_users, len(categories)), -1)
        for u, (aff, fav) in enumerate(zip(preferences[C.CATEGORY_AFFINITY], preferences[C.FAVORITE_BRANDS])):
            for cat, value in json.loads(aff).items():
                if cat in cat_code:
                    affinity[u, cat_code[cat]] = value
            for cat, brand in json.loads(fav).items():
                if cat in cat_code:
                    favorite[u, cat_code[cat]] = brand_code.get(brand, -1)
        return cls(
            user_ids=preferences[C.USER_ID].astype(str).to_numpy(),
            product_ids=products[C.PRODUCT_ID].astype(str).to_numpy(),
            categories=categories, affinity=affinity,
            price_sensitivity=preferences[C.PRICE_SENSITIVITY].to_numpy(float),
            brand_loyalty=preferences[C.BRAND_LOYALTY].to_numpy(float), favorite_brand=favorite,
            product_category=products[C.CATEGORY].map(cat_code).to_numpy(int),
            product_brand=products[C.BRAND].map(brand_code).to_numpy(int), price=price,
            price_ratio=price / products[C.CATEGORY].map(medians).to_numpy(float),
            quality=products["quality"].to_numpy(float))

    # -- ids -> positions ---------------------------------------------------------------------
    def user_index(self, user_ids: Sequence[str]) -> np.ndarray:
        """Positions of ``user_ids``; ``ValueError`` naming the ids that are not in the world."""
        unknown = [u for u in user_ids if u not in self._users]
        if unknown:
            raise ValueError(f"{len(unknown)} user id(s) are not in the world, e.g. "
                             f"{_examples(unknown)}; the world's users look like {_examples(self.user_ids)}")
        return np.fromiter((self._users[u] for u in user_ids), dtype=int, count=len(user_ids))

    def product_index(self, product_ids: Sequence[str]) -> np.ndarray:
        """Positions of ``product_ids``; ``ValueError`` naming the ids not in the catalogue."""
        unknown = sorted({p for p in product_ids if p not in self._products})
        if unknown:
            raise ValueError(f"{len(unknown)} product id(s) are not in the world's catalogue, e.g. "
                             f"{_examples(unknown)}")
        return np.fromiter((self._products[p] for p in product_ids), dtype=int, count=len(product_ids))

    # -- the click and purchase model ------------------------------------------------------------
    def click_probabilities(self, users: np.ndarray, slates: np.ndarray) -> np.ndarray:
        """P(click) of each slot of each slate on one visit: ``data.click_probability`` of user
        ``users[i]`` for product ``slates[i, j]`` shown at position ``j + 1``. Shape of ``slates``."""
        users = np.asarray(users, dtype=int)
        slates = np.asarray(slates, dtype=int)
        u = np.broadcast_to(users[:, None], slates.shape).ravel()
        p = slates.ravel()
        pos = np.broadcast_to(np.arange(1, slates.shape[1] + 1), slates.shape).ravel()
        cat = self.product_category[p]
        fav = self.favorite_brand[u, cat]
        match = (fav >= 0) & (fav == self.product_brand[p])
        args = zip(self.affinity[u, cat].tolist(), self.price_ratio[p].tolist(),
                   self.price_sensitivity[u].tolist(), match.tolist(),
                   self.brand_loyalty[u].tolist(), self.quality[p].tolist(), pos.tolist())
        probs = np.fromiter((data.click_probability(*a) for a in args), dtype=float, count=p.size)
        return probs.reshape(slates.shape)

    def purchase_probabilities(self, slates: np.ndarray) -> np.ndarray:
        """P(purchase | click) for each product of ``slates``."""
        return purchase_probability(self.quality[np.asarray(slates, dtype=int)])


def load_shop(profile: str | None = None) -> Shop:
    """The shop of a profile's world: the clean catalogue and users (``cleaning.load_clean``),
    with the hidden product quality regenerated from the world's seed (``data.generate_products``).
    User ids are the clean, pseudonymous ones of the events table."""
    from .cleaning import load_clean
    from .config import get_settings

    settings = get_settings(profile)
    tables = load_clean(settings.profile)
    truth = data.generate_products(settings, np.random.default_rng(settings.seed))
    medians = truth.groupby(C.CATEGORY)[C.PRICE].median().to_dict()
    clean_ids = set(tables[C.PRODUCTS][C.PRODUCT_ID])
    truth = truth[truth[C.PRODUCT_ID].isin(clean_ids)].reset_index(drop=True)
    return Shop.from_tables(truth, tables[C.USER_PREFERENCES], medians)


# =============================================================================================
# recommenders
# =============================================================================================
def _run_frame(user_ids: Sequence[str], product_ids: np.ndarray, top: np.ndarray,
               scores: np.ndarray) -> pd.DataFrame:
    k = top.shape[1]
    return pd.DataFrame({
        C.USER_ID: np.repeat(np.asarray(user_ids, dtype=object), k),
        C.PRODUCT_ID: product_ids[top].ravel(),
        C.SCORE: np.take_along_axis(scores, top, axis=1).ravel() if scores.ndim == 2 else scores[top].ravel(),
        C.RANK: np.tile(np.arange(1, k + 1), len(user_ids)),
    })


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best scores per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _interactions(events: pd.DataFrame, kinds: Sequence[str] = (C.CLICK,)) -> pd.DataFrame:
    _require(events, [C.USER_ID, C.PRODUCT_ID, C.EVENT_TYPE], "events")
    return events[events[C.EVENT_TYPE].isin(kinds)]


def popularity_recommender(events: pd.DataFrame, products: pd.DataFrame) -> Callable[[list[str], int], pd.DataFrame]:
    """Everyone gets the most-clicked products of the logs (ties by ``product_id``)."""
    _require(products, [C.PRODUCT_ID], "products")
    ids = np.sort(products[C.PRODUCT_ID].astype(str).unique())
    clicks = _interactions(events)[C.PRODUCT_ID].value_counts().reindex(ids, fill_value=0)
    scores = clicks.to_numpy(float)

    def recommend(user_ids: list[str], k: int) -> pd.DataFrame:
        k = _positive_int(k, "k")
        top = np.tile(_top_k(scores[None, :], k), (len(user_ids), 1))
        return _run_frame(user_ids, ids, top, scores)

    return recommend


def category_recommender(events: pd.DataFrame, products: pd.DataFrame, within: str = "popular",
                         prior_impressions: float = 50.0) -> Callable[[list[str], int], pd.DataFrame]:
    """Products of each user's most-clicked categories.

    A user's share of clicks per category (users without clicks get the shop's overall shares)
    weighs each category; inside a category the ``r``-th best product scores ``share / r``, so the
    slate mixes the user's categories. ``within="popular"`` ranks products by their clicks in the
    logs; ``within="ctr"`` by their smoothed click-through rate ``(clicks + m * ctr_all) /
    (impressions + m)`` with ``m = prior_impressions``, which corrects for how often the old ranker
    showed each product.
    """
    if within not in ("popular", "ctr"):
        raise ValueError(f"within must be 'popular' or 'ctr', got {within!r}")
    _require(products, [C.PRODUCT_ID, C.CATEGORY], "products")
    _require(events, [C.USER_ID, C.PRODUCT_ID, C.EVENT_TYPE], "events")
    catalogue = products.drop_duplicates(C.PRODUCT_ID).sort_values(C.PRODUCT_ID)
    ids = catalogue[C.PRODUCT_ID].astype(str).to_numpy()
    categories = sorted(catalogue[C.CATEGORY].unique())
    cat = catalogue[C.CATEGORY].map({c: i for i, c in enumerate(categories)}).to_numpy()
    clicks_log = _interactions(events)
    clicks = clicks_log[C.PRODUCT_ID].value_counts().reindex(ids, fill_value=0).to_numpy(float)
    if within == "ctr":
        shown = _interactions(events, (C.IMPRESSION,))[C.PRODUCT_ID].value_counts()
        shown = shown.reindex(ids, fill_value=0).to_numpy(float)
        prior = clicks.sum() / max(shown.sum(), 1.0)
        quality = (clicks + prior_impressions * prior) / (shown + prior_impressions)
    else:
        quality = clicks
    rank_in_cat = (pd.DataFrame({"cat": cat, "q": quality, "i": np.arange(len(ids))})
                   .sort_values(["cat", "q", "i"], ascending=[True, False, True])
                   .groupby("cat").cumcount().sort_index().to_numpy() + 1)
    per_cat = (clicks_log.assign(cat=clicks_log[C.PRODUCT_ID].map(dict(zip(ids, cat))))
               .dropna(subset=["cat"]).groupby([C.USER_ID, "cat"]).size())
    overall = np.bincount(per_cat.index.get_level_values("cat").astype(int),
                          weights=per_cat.to_numpy(float), minlength=len(categories))
    overall = overall / max(overall.sum(), 1.0)
    shares = {uid: np.bincount(g.index.get_level_values("cat").astype(int), weights=g.to_numpy(float),
                               minlength=len(categories))
              for uid, g in per_cat.groupby(level=C.USER_ID)}

    def recommend(user_ids: list[str], k: int) -> pd.DataFrame:
        k = _positive_int(k, "k")
        share = np.stack([shares.get(u, overall) for u in user_ids]) if len(user_ids) else \
            np.zeros((0, len(categories)))
        share = share / np.maximum(share.sum(axis=1, keepdims=True), 1e-12)
        parts = []
        for start in range(0, len(user_ids), 256):
            scores = share[start:start + 256][:, cat] / rank_in_cat
            parts.append(_run_frame(user_ids[start:start + 256], ids, _top_k(scores, k), scores))
        return pd.concat(parts, ignore_index=True) if parts else _run_frame([], ids, np.zeros((0, k), int), quality)

    return recommend


def random_recommender(products: pd.DataFrame, seed: int = 0) -> Callable[[list[str], int], pd.DataFrame]:
    """``k`` products drawn at random for each user (the same user always gets the same ones)."""
    _require(products, [C.PRODUCT_ID], "products")
    ids = np.sort(products[C.PRODUCT_ID].astype(str).unique())

    def recommend(user_ids: list[str], k: int) -> pd.DataFrame:
        k = _positive_int(k, "k")
        rows = [np.random.default_rng([seed, int(hash_bucket(u, "random") * 2**32)])
                .choice(len(ids), size=min(k, len(ids)), replace=False) for u in user_ids]
        top = np.array(rows, dtype=int).reshape(len(user_ids), -1)
        return _run_frame(user_ids, ids, top, np.zeros(len(ids)))

    return recommend


def recommendations(recommender: Recommender, user_ids: Sequence[str], k: int) -> pd.DataFrame:
    """The top ``k`` of each user, checked: ``user_id``, ``product_id``, ``rank`` (1..k).

    ``recommender`` is a run DataFrame or a callable ``(user_ids, k) -> run``. Raises
    ``ValueError`` for an empty run, a missing column, a repeated (user, product) pair, or a
    user who gets fewer than ``k`` products (naming the users)."""
    k = _positive_int(k, "k")
    user_ids = list(user_ids)
    if not user_ids:
        raise ValueError("no users to recommend for")
    run = recommender(user_ids, k) if callable(recommender) else recommender
    run = sort_run(run, C.USER_ID, "the recommender's run")
    run = run[run[C.USER_ID].isin(set(user_ids))]
    run = run.groupby(C.USER_ID, sort=False).head(k)
    counts = run[C.USER_ID].value_counts().reindex(user_ids, fill_value=0)
    short = counts[counts < k]
    if len(short):
        raise ValueError(f"the recommender returned fewer than k={k} products for {len(short)} "
                         f"user(s), e.g. " + ", ".join(f"{u}: {n}" for u, n in short.head(3).items()))
    run = run.assign(**{C.RANK: run.groupby(C.USER_ID, sort=False).cumcount() + 1})
    return run[[C.USER_ID, C.PRODUCT_ID, C.RANK]].reset_index(drop=True)


def slate_matrix(shop: Shop, recommender: Recommender, user_ids: Sequence[str], k: int) -> np.ndarray:
    """Each user's slate as product positions in ``shop``, shape ``[len(user_ids), k]``."""
    shop.user_index(list(user_ids))
    run = recommendations(recommender, user_ids, k)
    products = shop.product_index(run[C.PRODUCT_ID].tolist()).reshape(-1, k)
    row = {u: i for i, u in enumerate(run[C.USER_ID].iloc[::k])}
    return products[[row[u] for u in user_ids]]


# =============================================================================================
# assignment
# =============================================================================================
def hash_bucket(user_id: str, salt: str) -> float:
    """A number in [0, 1) from SHA-256 of ``"{salt}:{user_id}"``: the same user and salt always
    give the same number, and a new salt reshuffles everyone."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode("utf-8")).hexdigest()
    return int(digest[:15], 16) / 16 ** 15


def assign_variants(user_ids: Sequence[str], salt: str = DEFAULT_SALT,
                    treatment_share: float = 0.5) -> pd.DataFrame:
    """``user_id``, ``variant``: treatment when ``hash_bucket(user_id, salt) < treatment_share``.
    Deterministic (a returning user stays in their arm) and independent between experiments with
    different salts."""
    share = stats.check_probability(treatment_share, "treatment_share")
    user_ids = [str(u) for u in user_ids]
    buckets = np.fromiter((hash_bucket(u, salt) for u in user_ids), dtype=float, count=len(user_ids))
    return pd.DataFrame({C.USER_ID: user_ids,
                         C.VARIANT: np.where(buckets < share, C.TREATMENT, C.CONTROL)})


def check_variants(per_user: pd.DataFrame, variants: Sequence[str] = C.VARIANTS) -> None:
    """``ValueError`` unless ``per_user[variant]`` holds only ``variants``, each at least once."""
    _require(per_user, [C.USER_ID, C.VARIANT], "per_user")
    if per_user.empty:
        raise ValueError("per_user is empty: the experiment has no users")
    present = set(per_user[C.VARIANT].unique())
    unknown = sorted(map(str, present - set(variants)))
    if unknown:
        raise ValueError(f"unknown variant name(s) {unknown}; expected {list(variants)}")
    absent = [v for v in variants if v not in present]
    if absent:
        raise ValueError(f"variant(s) {absent} have no users")


def srm_check(per_user: pd.DataFrame, expected_share: float = 0.5) -> stats.SRMResult:
    """Sample-ratio-mismatch test of an experiment's arm sizes (see ``stats.srm_test``)."""
    check_variants(per_user)
    counts = per_user[C.VARIANT].value_counts()
    return stats.srm_test(int(counts[C.CONTROL]), int(counts[C.TREATMENT]), expected_share)


# =============================================================================================
# one experiment
# =============================================================================================
def _sample_outcomes(rng: np.random.Generator, click_p: np.ndarray, buy_p: np.ndarray,
                     price: np.ndarray, visits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user clicks, purchases and revenue: each slot is clicked ``Binomial(visits, p)``
    times (visits are independent) and each click bought with ``buy_p``. Arrays ``[..., k]``."""
    clicks = rng.binomial(visits[..., None], click_p)
    purchases = rng.binomial(clicks, buy_p)
    return clicks.sum(-1), purchases.sum(-1), (purchases * price).sum(-1)


def _variant_recommenders(variants: Mapping[str, Recommender]) -> dict[str, Recommender]:
    if not isinstance(variants, Mapping):
        raise TypeError("variants must be a dict {'control': recommender, 'treatment': recommender}")
    unknown = sorted(map(str, set(variants) - set(C.VARIANTS)))
    if unknown:
        raise ValueError(f"unknown variant name(s) {unknown}; use {list(C.VARIANTS)}")
    missing = [v for v in C.VARIANTS if v not in variants]
    if missing:
        raise ValueError(f"no recommender for variant(s) {missing}")
    return dict(variants)


def _visits(rng: np.random.Generator, mean_visits: float, size: Any) -> np.ndarray:
    """Visits per user: 1 + Poisson(mean_visits - 1)."""
    if isinstance(mean_visits, bool) or not isinstance(mean_visits, numbers.Real) or mean_visits < 1:
        raise ValueError(f"visits (the mean number of visits per user) must be >= 1, got {mean_visits!r}")
    return 1 + rng.poisson(mean_visits - 1, size=size)


def run_experiment(shop: Shop, variants: Mapping[str, Recommender], k: int = 10, visits: float = 3.0,
                   days: int = 14, salt: str = DEFAULT_SALT, treatment_share: float = 0.5,
                   seed: int = 0, user_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Run one A/B test; one row per user: ``user_id``, ``variant``, ``day`` (arrival day, from
    0), ``visits``, ``impressions``, ``clicks``, ``purchases``, ``revenue``.

    ``variants`` maps ``"control"`` and ``"treatment"`` to recommenders. Users (default: all
    of the shop) are split by :func:`assign_variants`; each arrives on a random day, visits
    ``1 + Poisson(visits - 1)`` times and sees the same slate of ``k`` products each time. Clicks
    and purchases are drawn from the world's model with ``numpy.random.default_rng(seed)``.
    """
    recommenders = _variant_recommenders(variants)
    k, days = _positive_int(k, "k"), _positive_int(days, "days")
    user_ids = [str(u) for u in (shop.user_ids if user_ids is None else user_ids)]
    if not user_ids:
        raise ValueError("user_ids is empty: the experiment has no users")
    users = shop.user_index(user_ids)
    rng = np.random.default_rng(seed)
    assignment = assign_variants(user_ids, salt, treatment_share)
    n_visits = _visits(rng, visits, len(user_ids))
    day = rng.integers(0, days, size=len(user_ids))
    frames = []
    for variant in C.VARIANTS:
        mask = (assignment[C.VARIANT] == variant).to_numpy()
        if not mask.any():
            continue
        ids = [u for u, m in zip(user_ids, mask) if m]
        try:
            slates = slate_matrix(shop, recommenders[variant], ids, k)
        except ValueError as err:
            raise ValueError(f"variant {variant!r}: {err}") from err
        click_p = shop.click_probabilities(users[mask], slates)
        clicks, purchases, revenue = _sample_outcomes(
            rng, click_p, shop.purchase_probabilities(slates), shop.price[slates], n_visits[mask])
        frames.append(pd.DataFrame({
            C.USER_ID: ids, C.VARIANT: variant, C.DAY: day[mask], C.VISITS: n_visits[mask],
            C.IMPRESSIONS: n_visits[mask] * k, C.CLICKS: clicks, C.PURCHASES: purchases,
            C.REVENUE: np.round(revenue, 2)}))
    per_user = pd.concat(frames, ignore_index=True)
    order = {u: i for i, u in enumerate(user_ids)}
    return per_user.sort_values(C.USER_ID, key=lambda s: s.map(order)).reset_index(drop=True)


_PER_USER_COLUMNS = (C.USER_ID, C.VARIANT, C.IMPRESSIONS, C.CLICKS, C.PURCHASES, C.REVENUE)


def summarize_experiment(per_user: pd.DataFrame) -> pd.DataFrame:
    """Totals and metrics per variant (rows ``control``, ``treatment``): ``users``,
    ``impressions``, ``clicks``, ``purchases``, ``revenue``, ``ctr``, ``user_click_rate``,
    ``conversion``, ``revenue_per_user`` (see the module doc for their definitions)."""
    _require(per_user, _PER_USER_COLUMNS, "per_user")
    check_variants(per_user)
    g = per_user.groupby(C.VARIANT)
    table = pd.DataFrame({
        C.USERS_COUNT: g.size(),
        C.IMPRESSIONS: g[C.IMPRESSIONS].sum(), C.CLICKS: g[C.CLICKS].sum(),
        C.PURCHASES: g[C.PURCHASES].sum(), C.REVENUE: g[C.REVENUE].sum(),
    }).reindex(list(C.VARIANTS))
    table[C.CTR] = table[C.CLICKS] / table[C.IMPRESSIONS]
    table[C.USER_CLICK_RATE] = g[C.CLICKS].apply(lambda s: (s > 0).mean())
    table[C.CONVERSION] = g[C.PURCHASES].apply(lambda s: (s > 0).mean())
    table[C.REVENUE_PER_USER] = table[C.REVENUE] / table[C.USERS_COUNT]
    table.index.name = C.VARIANT
    return table


def analyze_experiment(per_user: pd.DataFrame, alpha: float = 0.05, n_resamples: int = 2000,
                       seed: int = 0) -> pd.DataFrame:
    """One row per metric: ``control``, ``treatment``, ``diff`` (treatment - control), ``lift``
    (relative), ``ci_low``, ``ci_high`` (``1 - alpha`` interval), ``p_value``, ``significant``,
    ``method``. Per-user rates use the two-proportion z-test; CTR and revenue per user a bootstrap
    over users (the p-value of CTR from the bootstrap standard error, of revenue from Welch's t-test)."""
    alpha = stats.check_probability(alpha, "alpha")
    _require(per_user, _PER_USER_COLUMNS, "per_user")
    check_variants(per_user)
    a = per_user[per_user[C.VARIANT] == C.CONTROL]
    b = per_user[per_user[C.VARIANT] == C.TREATMENT]
    rows = {}
    ci = stats.bootstrap_diff_ci(a[C.CLICKS], b[C.CLICKS], n_resamples, 1 - alpha, seed,
                                 a_den=a[C.IMPRESSIONS], b_den=b[C.IMPRESSIONS])
    rows[C.CTR] = (a[C.CLICKS].sum() / a[C.IMPRESSIONS].sum(), b[C.CLICKS].sum() / b[C.IMPRESSIONS].sum(),
                   ci.low, ci.high, ci.p_value, "bootstrap over users")
    for metric, col in ((C.USER_CLICK_RATE, C.CLICKS), (C.CONVERSION, C.PURCHASES)):
        z = stats.two_proportion_ztest(int((a[col] > 0).sum()), len(a), int((b[col] > 0).sum()), len(b), alpha)
        rows[metric] = (z.p_a, z.p_b, z.ci_low, z.ci_high, z.p_value, "two-proportion z-test")
    ci = stats.bootstrap_diff_ci(a[C.REVENUE], b[C.REVENUE], n_resamples, 1 - alpha, seed + 1)
    _, p = stats.welch_ttest(a[C.REVENUE], b[C.REVENUE])
    rows[C.REVENUE_PER_USER] = (a[C.REVENUE].mean(), b[C.REVENUE].mean(), ci.low, ci.high, p,
                                "bootstrap CI, Welch t-test")
    table = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=[C.CONTROL, C.TREATMENT, "ci_low", "ci_high", P_VALUE, "method"])
    table.insert(2, "diff", table[C.TREATMENT] - table[C.CONTROL])
    table.insert(3, "lift", table["diff"] / table[C.CONTROL].where(table[C.CONTROL] != 0))
    table.insert(7, "significant", table[P_VALUE] < alpha)
    table.index.name = "metric"
    return table


# =============================================================================================
# many experiments at once (A/A tests, peeking, power)
# =============================================================================================
_BINARY_METRICS = (C.USER_CLICK_RATE, C.CONVERSION)


def _arm_model(shop: Shop, recommender: Recommender, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Click probabilities, purchase probabilities and prices of every user's slate, ``[U, k]``."""
    slates = slate_matrix(shop, recommender, [str(u) for u in shop.user_ids], k)
    return (shop.click_probabilities(np.arange(shop.n_users), slates),
            shop.purchase_probabilities(slates), shop.price[slates])


def simulate_experiments(shop: Shop, control: Recommender, treatment: Recommender | None = None,
                         n_runs: int = 500, k: int = 10, visits: float = 3.0, days: int = 14,
                         n_users: int | None = None, treatment_share: float = 0.5, seed: int = 0,
                         metric: str = C.CONVERSION) -> pd.DataFrame:
    """Repeat an experiment ``n_runs`` times and test ``metric`` after every day.

    ``treatment=None`` runs A/A tests (the control in both arms). Each run draws fresh coin-flip
    assignments (a new salt per run), arrival days, visits, clicks and purchases from
    ``numpy.random.default_rng(seed)``; with ``n_users`` each run draws that many users with
    replacement from the shop (a bigger shop with the same kind of users), else it uses every user.
    Slates are computed once per user and arm.

    Returns one row per (run, day) with the cumulative ``n_control``, ``x_control`` (users with a
    success), ``n_treatment``, ``x_treatment`` up to that day and the two-proportion ``z`` and
    two-sided ``p_value`` a look on that day would see.
    """
    if metric not in _BINARY_METRICS:
        raise ValueError(f"metric must be a per-user rate, one of {list(_BINARY_METRICS)}; got {metric!r}")
    n_runs, k, days = _positive_int(n_runs, "n_runs"), _positive_int(k, "k"), _positive_int(days, "days")
    share = stats.check_probability(treatment_share, "treatment_share")
    arms = [_arm_model(shop, control, k)]
    arms.append(arms[0] if treatment is None else _arm_model(shop, treatment, k))
    click_p, buy_p, price = (np.stack(parts) for parts in zip(*arms))  # [2, U, k]
    n = shop.n_users if n_users is None else _positive_int(n_users, "n_users")
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_runs, 2, 2, days))  # run, arm, (users, successes), day
    chunk = max(1, 2_000_000 // (n * k))
    for start in range(0, n_runs, chunk):
        r = min(n_runs, start + chunk) - start
        users = (np.broadcast_to(np.arange(n), (r, n)) if n_users is None
                 else rng.integers(0, shop.n_users, size=(r, n)))
        arm = (rng.random((r, n)) < share).astype(int)
        day = rng.integers(0, days, size=(r, n))
        clicks, purchases, _ = _sample_outcomes(rng, click_p[arm, users], buy_p[arm, users],
                                                price[arm, users], _visits(rng, visits, (r, n)))
        success = (clicks if metric == C.USER_CLICK_RATE else purchases) > 0
        cell = ((np.arange(r)[:, None] * 2 + arm) * days + day).ravel()
        size = r * 2 * days
        counts[start:start + r, :, 0] = np.bincount(cell, minlength=size).reshape(r, 2, days)
        counts[start:start + r, :, 1] = np.bincount(cell, weights=success.ravel(),
                                                    minlength=size).reshape(r, 2, days)
    cum = counts.cumsum(axis=-1)
    frame = pd.DataFrame({
        RUN: np.repeat(np.arange(n_runs), days), C.DAY: np.tile(np.arange(days), n_runs),
        "n_control": cum[:, 0, 0].ravel().astype(int), "x_control": cum[:, 0, 1].ravel().astype(int),
        "n_treatment": cum[:, 1, 0].ravel().astype(int), "x_treatment": cum[:, 1, 1].ravel().astype(int),
    })
    frame[Z] = stats.z_statistic(frame["x_control"], np.maximum(frame["n_control"], 1),
                                 frame["x_treatment"], np.maximum(frame["n_treatment"], 1))
    frame[P_VALUE] = stats.p_value_from_z(frame[Z])
    frame.attrs["metric"] = metric
    return frame


def n_simulations(profile: str | None = None) -> int:
    """How many experiments the lesson simulates in ``profile`` (see :data:`SIMULATIONS`)."""
    from .config import get_settings

    return SIMULATIONS[get_settings(profile).profile]


def _check_simulations(sims: pd.DataFrame) -> None:
    _require(sims, [RUN, C.DAY, P_VALUE], "simulations")
    if sims.empty:
        raise ValueError("simulations is empty: run simulate_experiments first")


def rejection_rate(sims: pd.DataFrame, alpha: float = 0.05, confidence: float = 0.95) -> dict[str, float]:
    """Share of runs whose final (fixed-horizon) test has ``p < alpha``, with its Clopper-Pearson
    interval: the false-positive rate of A/A runs, the power of A/B runs. Keys ``rate``, ``low``,
    ``high``, ``n_runs``, ``rejections``."""
    alpha = stats.check_probability(alpha, "alpha")
    _check_simulations(sims)
    last = sims[sims[C.DAY] == sims[C.DAY].max()]
    hits = int((last[P_VALUE] < alpha).sum())
    low, high = stats.binomial_ci(hits, len(last), confidence)
    return {"rate": hits / len(last), "low": low, "high": high, "n_runs": len(last), "rejections": hits}


def peeking_curve(sims: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """By day: the share of runs a peeker has stopped *by* then (first ``p < alpha`` on any day so
    far), next to the share a Bonferroni peeker (``p < alpha / days``) has stopped."""
    alpha = stats.check_probability(alpha, "alpha")
    _check_simulations(sims)
    looks = sims[C.DAY].nunique()
    p = sims.sort_values([RUN, C.DAY]).pivot(index=RUN, columns=C.DAY, values=P_VALUE).to_numpy()
    return pd.DataFrame({
        C.DAY: np.arange(looks),
        "peeking": np.maximum.accumulate(p < alpha, axis=1).mean(axis=0),
        "bonferroni": np.maximum.accumulate(p < alpha / looks, axis=1).mean(axis=0),
    })


def false_positive_rates(sims: pd.DataFrame, alpha: float = 0.05, confidence: float = 0.95) -> pd.DataFrame:
    """How often A/A runs declare a winner under three stopping rules, with Clopper-Pearson CIs:
    ``fixed horizon`` (one test on the last day), ``peeking`` (stop at the first daily
    ``p < alpha``) and ``peeking + Bonferroni`` (stop at the first ``p < alpha / looks``)."""
    alpha = stats.check_probability(alpha, "alpha")
    curve = peeking_curve(sims, alpha)
    n_runs = sims[RUN].nunique()
    rates = {"fixed horizon": rejection_rate(sims, alpha)["rate"],
             "peeking every day": float(curve["peeking"].iloc[-1]),
             "peeking + Bonferroni": float(curve["bonferroni"].iloc[-1])}
    rows = []
    for rule, rate in rates.items():
        hits = int(round(rate * n_runs))
        low, high = stats.binomial_ci(hits, n_runs, confidence)
        rows.append({"rule": rule, "false_positive_rate": rate, "ci_low": low, "ci_high": high,
                     "n_runs": n_runs})
    return pd.DataFrame(rows).set_index("rule")


def expected_rates(shop: Shop, recommender: Recommender, k: int = 10, visits: float = 3.0,
                   n_draws: int = 20, seed: int = 0) -> dict[str, float]:
    """The world's true ``ctr``, ``user_click_rate``, ``conversion`` and ``revenue_per_user`` of a
    recommender shown to every user (Monte-Carlo: ``n_draws`` simulated experiences per user)."""
    click_p, buy_p, price = _arm_model(shop, recommender, _positive_int(k, "k"))
    rng = np.random.default_rng(seed)
    n_draws = _positive_int(n_draws, "n_draws")
    n_visits = _visits(rng, visits, (n_draws, shop.n_users))
    clicks, purchases, revenue = _sample_outcomes(rng, click_p, buy_p, price, n_visits)
    return {C.CTR: float(clicks.sum() / (n_visits.sum() * k)),
            C.USER_CLICK_RATE: float((clicks > 0).mean()), C.CONVERSION: float((purchases > 0).mean()),
            C.REVENUE_PER_USER: float(revenue.mean())}


# =============================================================================================
# the offline view
# =============================================================================================
def split_last_click(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each user's last click: ``(train_events, heldout)``. ``train_events`` keeps only
    what happened before that click (users without a click keep everything); ``heldout`` has
    ``user_id``, ``product_id``."""
    _require(events, [C.USER_ID, C.PRODUCT_ID, C.EVENT_TYPE, C.TIMESTAMP], "events")
    clicks = events[events[C.EVENT_TYPE] == C.CLICK]
    if clicks.empty:
        raise ValueError("events has no click to hold out")
    last = clicks.sort_values([C.USER_ID, C.TIMESTAMP], kind="mergesort").groupby(C.USER_ID).tail(1)
    cutoff = events[C.USER_ID].map(last.set_index(C.USER_ID)[C.TIMESTAMP])
    train = events[cutoff.isna() | (events[C.TIMESTAMP] < cutoff)].reset_index(drop=True)
    return train, last[[C.USER_ID, C.PRODUCT_ID]].reset_index(drop=True)


def offline_metrics(recommender: Recommender, heldout: pd.DataFrame,
                    metrics: Sequence[str] = ("hit@10", "ndcg@10"), k: int = 10) -> dict[str, float]:
    """Mean of ``metrics`` (``evaluation`` names) of the recommender's top ``k`` against each
    user's held-out product (from :func:`split_last_click`); key ``n_users`` counts the users."""
    _require(heldout, [C.USER_ID, C.PRODUCT_ID], "heldout")
    if heldout.empty:
        raise ValueError("heldout is empty: no user to evaluate")
    run = recommendations(recommender, heldout[C.USER_ID].astype(str).unique().tolist(), k)
    qrels = heldout.rename(columns={C.USER_ID: C.QUERY_ID}).assign(**{C.ESCI_LABEL: "E"})
    per_user = evaluate(run.rename(columns={C.USER_ID: C.QUERY_ID}), qrels, list(metrics))
    return {**{m: float(per_user[m].mean()) for m in metrics}, "n_users": len(per_user)}
