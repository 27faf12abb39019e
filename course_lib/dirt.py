"""Make the clean world dirty, the way real exports are: ``make_raw(world, settings)``.

Every kind of dirt and its rate is listed in ``DIRT`` so that the datasheet, lesson 01 and the
cleaning tests speak of the same things. All raw columns are text.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import columns as C
from .config import Settings
from .taxonomy import BED, CAPACITY, CLOTHING, LEAF_BY_NAME, SCREEN, SHOE, VOLUME

# kind of dirt -> share of rows it touches
DIRT: dict[str, float] = {
    "products.title_upper_case": 0.04,
    "products.title_lower_case": 0.04,
    "products.title_extra_whitespace": 0.05,
    "products.description_html": 0.25,
    "products.size_unit_variants": 0.5,
    "products.price_string_formats": 0.45,
    "products.price_missing": 0.02,
    "products.price_negative": 0.01,
    "products.price_not_a_number": 0.01,
    "products.brand_missing": 0.02,
    "products.color_missing": 0.03,
    "products.category_path_variants": 0.06,
    "products.duplicates": 0.03,
    "users.duplicates": 0.02,
    "users.country_missing": 0.03,
    "users.email_case": 0.1,
    "events.duplicates": 0.02,
    "events.future_timestamp": 0.003,
    "events.unknown_product": 0.003,
    "events.missing_user": 0.002,
    "events.timestamp_formats": 0.05,
    "events.event_type_case": 0.05,
    "events.bot_users_per_1000_users": 5.0,
    "reviews.email_in_text": 0.06,
    "reviews.phone_in_text": 0.05,
    "reviews.invalid_rating": 0.02,
    "reviews.rating_as_decimal": 0.05,
    "reviews.html_in_text": 0.03,
    "reviews.duplicates": 0.02,
    "reviews.unknown_product": 0.005,
}

_EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "example.org")
_NAMES = ("john.doe", "jane_smith", "m.rossi", "li.wei88", "sam.k", "ana-lopez")


def _pick(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """Boolean mask choosing about ``share`` of ``n`` rows, and at least one row when share > 0."""
    mask = rng.random(n) < share
    if share > 0 and n > 0 and not mask.any():
        mask[rng.integers(n)] = True
    return mask


def _fmt_price(rng: np.random.Generator, price: float) -> str:
    r = rng.random()
    if price >= 1000 and r < 0.8:
        return f"${price:,.2f}"
    if r < 0.55:
        return f"${price:.2f}"
    if r < 0.75:
        return f"{price:.2f}"
    if r < 0.9:
        return f"USD {price:.2f}"
    if r < 0.95:
        return f" {price:.2f} "
    return f"{price:.2f} USD"


def raw_size(rng: np.random.Generator, size: str, kind: str) -> str:
    """One of the ways shops write a clean ``size`` ("1500 ml" -> "1.5L", "15.6 in" -> '15.6"')."""
    if not size:
        return size
    r = int(rng.integers(4))
    if kind == VOLUME:
        ml = int(size.split()[0])
        litres = f"{ml / 1000:g}"
        return (size, f"{ml}ml", f"{litres}L", f"{litres} l")[r] if ml >= 1000 else (size, f"{ml}ml", f"{ml} ML", size)[r]
    if kind == SCREEN:
        inch = size.split()[0]
        return (size, f'{inch}"', f"{inch} inch", f"{inch}-inch")[r]
    if kind == CLOTHING:
        names = {"XS": "extra small", "S": "small", "M": "medium", "L": "large", "XL": "extra large",
                 "XXL": "2XL"}
        return (size, size.lower(), names[size].title(), names[size])[r]
    if kind == SHOE:
        num = size.split()[1]
        return (size, num, f"us{num}", f"Size {num}")[r]
    if kind == CAPACITY:
        mah = int(size.split()[0])
        return (size, f"{mah}mAh", f"{mah:,} mAh", f"{mah} mah")[r]
    if kind == BED:
        return (size, size.lower(), size.upper(), f"{size} size")[r]
    return size


def _html(rng: np.random.Generator, text: str, brand: str) -> str:
    sentences = text.split(". ")
    body = ".<br/>".join(sentences) if rng.random() < 0.5 else ". ".join(sentences)
    body = body.replace("&", "&amp;").replace("'", "&#39;").replace(brand, f"<b>{brand}</b>", 1)
    return f"<p>{body}</p>" if rng.random() < 0.7 else f"<div class=\"desc\">{body}</div>"


def dirty_products(products: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Raw product export: inconsistent casing, units, price strings, HTML, gaps, duplicates."""
    p = products.copy()
    n = len(p)
    titles = p[C.TITLE].to_numpy(dtype=object)
    up, low, ws = (_pick(rng, n, DIRT[f"products.title_{k}"]) for k in ("upper_case", "lower_case", "extra_whitespace"))
    titles[up] = [t.upper() for t in titles[up]]
    titles[low & ~up] = [t.lower() for t in titles[low & ~up]]
    titles[ws] = ["  " + t.replace(" ", "  ", 1) + " " for t in titles[ws]]
    p[C.TITLE] = titles
    html = _pick(rng, n, DIRT["products.description_html"])
    p.loc[html, C.DESCRIPTION] = [_html(rng, d, b) for d, b in zip(p.loc[html, C.DESCRIPTION], p.loc[html, C.BRAND])]
    kinds = p[C.CATEGORY].map(lambda c: LEAF_BY_NAME[c].size_kind)
    vary = _pick(rng, n, DIRT["products.size_unit_variants"])
    p.loc[vary, C.SIZE] = [raw_size(rng, s, k) for s, k in zip(p.loc[vary, C.SIZE], kinds[vary])]
    p[C.PRICE] = [_fmt_price(rng, x) for x in p[C.PRICE]]  # about 45% not as "$12.34"
    for kind, value in (("missing", ""), ("negative", None), ("not_a_number", "N/A")):
        mask = _pick(rng, n, DIRT[f"products.price_{kind}"])
        p.loc[mask, C.PRICE] = value if value is not None else ["-" + x.strip().lstrip("$") for x in p.loc[mask, C.PRICE]]
    for col, key in ((C.BRAND, "brand_missing"), (C.COLOR, "color_missing")):
        p.loc[_pick(rng, n, DIRT[f"products.{key}"]), col] = ""
    paths = _pick(rng, n, DIRT["products.category_path_variants"])
    p.loc[paths, C.CATEGORY_PATH] = [
        path.lower().replace(" > ", "/") if rng.random() < 0.5 else path.replace(" > ", "  >  ")
        for path in p.loc[paths, C.CATEGORY_PATH]]
    dup = p[_pick(rng, n, DIRT["products.duplicates"])].copy()
    dup[C.TITLE] = [t.strip().title() if rng.random() < 0.5 else " " + t for t in dup[C.TITLE]]
    dup.loc[_pick(rng, len(dup), 0.5), C.DESCRIPTION] = ""
    p = pd.concat([p, dup], ignore_index=True)
    p = p.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    return p[[C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.BRAND, C.MODEL_NUMBER, C.CATEGORY_PATH,
              C.COLOR, C.MATERIAL, C.SIZE, C.PRICE, C.CREATED_AT]]


def dirty_users(users: pd.DataFrame, bot_ids: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Raw user export: duplicated rows, missing countries, e-mails in mixed case, bot accounts."""
    bots = pd.DataFrame({C.USER_ID: bot_ids,
                         C.EMAIL: [f"crawler{i}@botmail.net" for i in range(len(bot_ids))],
                         C.COUNTRY: "US", C.AGE_BAND: "18-24", C.SIGNUP_DATE: "2025-12-30"})
    u = pd.concat([users, bots], ignore_index=True)
    n = len(u)
    u.loc[_pick(rng, n, DIRT["users.country_missing"]), C.COUNTRY] = ""
    case = _pick(rng, n, DIRT["users.email_case"])
    u.loc[case, C.EMAIL] = u.loc[case, C.EMAIL].str.title()
    u = pd.concat([u, u[_pick(rng, n, DIRT["users.duplicates"])]], ignore_index=True)
    return u.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)


def _bot_events(bot_ids: list[str], product_ids: np.ndarray, settings: Settings,
                rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for b, uid in enumerate(bot_ids):
        for s in range(int(rng.integers(1, 4))):
            start = pd.Timestamp("2026-01-01") + pd.Timedelta(seconds=int(rng.integers(0, settings.days * 86400 - 3600)))
            n_clicks = int(rng.integers(150, 400))
            offsets = np.cumsum(rng.integers(0, 2, size=n_clicks))
            for k, off in enumerate(offsets):
                rows.append((f"B{b:03d}{s}", uid, start + pd.Timedelta(seconds=int(off)), C.CLICK,
                             product_ids[rng.integers(len(product_ids))], "", int(rng.integers(1, 11))))
    return pd.DataFrame(rows, columns=[C.SESSION_ID, C.USER_ID, C.TIMESTAMP, C.EVENT_TYPE,
                                       C.PRODUCT_ID, C.QUERY_TEXT, C.POSITION])


def _fmt_time(rng: np.random.Generator, ts: pd.Timestamp) -> str:
    r = rng.random()
    share = DIRT["events.timestamp_formats"]
    if r < share * 0.6:
        return ts.strftime("%Y/%m/%d %H:%M:%S")
    if r < share:
        return str(int(ts.timestamp()))
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def dirty_events(events: pd.DataFrame, bot_ids: list[str], product_ids: np.ndarray,
                 settings: Settings, rng: np.random.Generator) -> pd.DataFrame:
    """Raw event log: double-logged rows, mixed timestamp formats, future dates, unknown
    products, missing users, event types in odd case, and bot sessions that click non-stop."""
    bots = _bot_events(bot_ids, product_ids, settings, rng)
    bots.insert(0, C.EVENT_ID, [f"E9{i:07d}" for i in range(len(bots))])
    e = pd.concat([events, bots], ignore_index=True)
    n = len(e)
    future = _pick(rng, n, DIRT["events.future_timestamp"])
    e.loc[future, C.TIMESTAMP] = e.loc[future, C.TIMESTAMP] + pd.DateOffset(years=5)
    e[C.TIMESTAMP] = [_fmt_time(rng, ts) for ts in e[C.TIMESTAMP]]
    has_product = e[C.PRODUCT_ID] != ""
    unknown = _pick(rng, n, DIRT["events.unknown_product"]) & has_product.to_numpy()
    e.loc[unknown, C.PRODUCT_ID] = [f"P9{rng.integers(0, 99999):05d}" for _ in range(int(unknown.sum()))]
    e.loc[_pick(rng, n, DIRT["events.missing_user"]), C.USER_ID] = ""
    case = _pick(rng, n, DIRT["events.event_type_case"])
    e.loc[case, C.EVENT_TYPE] = [(t.title(), t.upper(), f" {t} ")[rng.integers(3)] for t in e.loc[case, C.EVENT_TYPE]]
    e[C.POSITION] = [str(p) if p else "" for p in e[C.POSITION]]
    dup = e[_pick(rng, n, DIRT["events.duplicates"])]
    e = pd.concat([e, dup], ignore_index=True)
    return e.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)


def _with_pii(rng: np.random.Generator, text: str, kind: str) -> str:
    if kind == "email":
        addr = f"{_NAMES[rng.integers(len(_NAMES))]}{rng.integers(10, 99)}@{_EMAIL_DOMAINS[rng.integers(4)]}"
        return f"{text} Questions? Email me at {addr}"
    phone = ("+1 (555) {a:03d}-{b:04d}", "555-{a:03d}-{b:04d}", "+44 20 {a:04d} {b:04d}",
             "(555) {a:03d} {b:04d}")[rng.integers(4)].format(a=rng.integers(100, 999), b=rng.integers(1000, 9999))
    return f"{text} Call me on {phone} if you want to buy mine."


def dirty_reviews(reviews: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Raw reviews: e-mail addresses and phone numbers in text, invalid ratings, HTML, duplicates."""
    r = reviews.copy()
    n = len(r)
    r[C.RATING] = r[C.RATING].astype(str)
    dec = _pick(rng, n, DIRT["reviews.rating_as_decimal"])
    r.loc[dec, C.RATING] = r.loc[dec, C.RATING] + ".0"
    bad = _pick(rng, n, DIRT["reviews.invalid_rating"])
    r.loc[bad, C.RATING] = [("0", "6", "-1", "", "five")[rng.integers(5)] for _ in range(int(bad.sum()))]
    for kind in ("email", "phone"):
        mask = _pick(rng, n, DIRT[f"reviews.{kind}_in_text"])
        r.loc[mask, C.REVIEW_TEXT] = [_with_pii(rng, t, kind) for t in r.loc[mask, C.REVIEW_TEXT]]
    html = _pick(rng, n, DIRT["reviews.html_in_text"])
    r.loc[html, C.REVIEW_TEXT] = "<p>" + r.loc[html, C.REVIEW_TEXT] + "<br></p>"
    unknown = _pick(rng, n, DIRT["reviews.unknown_product"])
    r.loc[unknown, C.PRODUCT_ID] = [f"P9{rng.integers(0, 99999):05d}" for _ in range(int(unknown.sum()))]
    r[C.TIMESTAMP] = [ts.strftime("%Y-%m-%dT%H:%M:%S") for ts in r[C.TIMESTAMP]]
    r = pd.concat([r, r[_pick(rng, n, DIRT["reviews.duplicates"])]], ignore_index=True)
    return r.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)


def make_raw(world: dict[str, pd.DataFrame], settings: Settings) -> dict[str, pd.DataFrame]:
    """Return the raw, dirty version of a generated world, every column as text. Queries, qrels
    and hidden user preferences are labels, not logs: they pass through clean."""
    rng = np.random.default_rng(settings.seed + 5)
    n_bots = max(2, int(round(len(world[C.USERS]) * DIRT["events.bot_users_per_1000_users"] / 1000)))
    bot_ids = [f"U9{i:05d}" for i in range(n_bots)]
    product_ids = world[C.PRODUCTS][C.PRODUCT_ID].to_numpy()
    raw = {
        C.PRODUCTS: dirty_products(world[C.PRODUCTS], rng),
        C.USERS: dirty_users(world[C.USERS], bot_ids, rng),
        C.EVENTS: dirty_events(world[C.EVENTS], bot_ids, product_ids, settings, rng),
        C.REVIEWS: dirty_reviews(world[C.REVIEWS], rng),
        C.QUERIES: world[C.QUERIES].copy(),
        C.QRELS: world[C.QRELS].copy(),
        C.USER_PREFERENCES: world[C.USER_PREFERENCES].copy(),
    }
    return {name: df.astype(str).replace({"nan": ""}) if name in (C.PRODUCTS, C.USERS, C.EVENTS, C.REVIEWS)
            else df for name, df in raw.items()}
