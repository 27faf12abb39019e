"""Column and table names: one name per idea, used by every module and notebook.

Import these constants instead of writing column names as strings, e.g.
``df[PRODUCT_ID]`` rather than ``df["product_id"]``.
"""
from __future__ import annotations

# --- ids -------------------------------------------------------------------
PRODUCT_ID = "product_id"
USER_ID = "user_id"
QUERY_ID = "query_id"
SESSION_ID = "session_id"
EVENT_ID = "event_id"
REVIEW_ID = "review_id"

# --- products --------------------------------------------------------------
TITLE = "title"
DESCRIPTION = "description"
BRAND = "brand"
MODEL_NUMBER = "model_number"
CATEGORY = "category"            # leaf category name, e.g. "In-Ear Headphones"
CATEGORY_PATH = "category_path"  # "Electronics > Audio > In-Ear Headphones"
COLOR = "color"
MATERIAL = "material"
SIZE = "size"                    # free text in raw data ("1.5L", "1500 ml", "M")
PRICE = "price"                  # float USD after cleaning; a string in raw data
CREATED_AT = "created_at"

# --- users -----------------------------------------------------------------
EMAIL = "email"
COUNTRY = "country"
AGE_BAND = "age_band"
SIGNUP_DATE = "signup_date"

# --- events ----------------------------------------------------------------
TIMESTAMP = "timestamp"
EVENT_TYPE = "event_type"
QUERY_TEXT = "query_text"
POSITION = "position"

SEARCH = "search"
IMPRESSION = "impression"
CLICK = "click"
ADD_TO_CART = "add_to_cart"
PURCHASE = "purchase"
EVENT_TYPES = (SEARCH, IMPRESSION, CLICK, ADD_TO_CART, PURCHASE)

# --- reviews ---------------------------------------------------------------
RATING = "rating"
REVIEW_TEXT = "review_text"

# --- queries and relevance labels -----------------------------------------
QUERY = "query"            # the query text
QUERY_TYPE = "query_type"  # one of QUERY_TYPES
SPLIT = "split"            # train / validation / test
ESCI_LABEL = "esci_label"  # E, S, C or I
GAIN = "gain"              # graded relevance used by ndcg

KEYWORD = "keyword"
SYNONYM = "synonym"
ATTRIBUTE = "attribute"
MODEL_NUMBER_QUERY = "model_number"
MISSPELLING = "misspelling"
QUERY_TYPES = (KEYWORD, SYNONYM, ATTRIBUTE, MODEL_NUMBER_QUERY, MISSPELLING)

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)

# ESCI: Exact, Substitute, Complement, Irrelevant (Amazon Shopping Queries dataset).
ESCI_LABELS = ("E", "S", "C", "I")
# graded gains for ndcg, as in the KDD Cup 2022 ESCI ranking task; binary metrics count "E" only
ESCI_GAINS = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
RELEVANT_LABELS = ("E",)

# --- runs (ranked results): query_id, product_id, score, rank (1 = best) ----------
SCORE = "score"
RANK = "rank"

# --- table names -----------------------------------------------------------
PRODUCTS = "products"
USERS = "users"
EVENTS = "events"
REVIEWS = "reviews"
QUERIES = "queries"
QRELS = "qrels"
TABLES = (PRODUCTS, USERS, EVENTS, REVIEWS, QUERIES, QRELS)
RAW_TABLES = (PRODUCTS, USERS, EVENTS, REVIEWS)  # the tables that ship dirty

# hidden ground truth, for simulation only (never needed by the learner)
USER_PREFERENCES = "user_preferences"
FAVORITE_CATEGORIES = "favorite_categories"
CATEGORY_AFFINITY = "category_affinity"
PRICE_SENSITIVITY = "price_sensitivity"
BRAND_LOYALTY = "brand_loyalty"
FAVORITE_BRANDS = "favorite_brands"

# --- recommendation ------------------------------------------------------------
# interactions: click / add_to_cart / purchase events, one row per (user, session, product)
INTERACTION_TYPES = (CLICK, ADD_TO_CART, PURCHASE)
SOURCE = "source"      # the candidate source of one row ("similarity", "cooccurrence", ...)
SOURCES = "sources"    # the sources that proposed a merged candidate, e.g. ("popularity", "similarity")
LABEL = "label"        # 1 for a held-out next item among the candidates, else 0

# --- experiments ----------------------------------------------------------------
# online A/B tests (course_lib.abtest, course_lib.stats): one row per user of an experiment
VARIANT = "variant"        # the arm a user is in: CONTROL or TREATMENT
CONTROL = "control"
TREATMENT = "treatment"
VARIANTS = (CONTROL, TREATMENT)
DAY = "day"                # the day (from 0) a user enters the experiment
VISITS = "visits"          # how many times the user saw a slate of recommendations
IMPRESSIONS = "impressions"
CLICKS = "clicks"
PURCHASES = "purchases"
REVENUE = "revenue"
# experiment metrics, per variant
USERS_COUNT = "users"                    # users in the variant
CTR = "ctr"                              # clicks / impressions (a ratio metric)
USER_CLICK_RATE = "user_click_rate"      # share of users with at least one click
CONVERSION = "conversion"                # share of users with at least one purchase
REVENUE_PER_USER = "revenue_per_user"    # mean revenue over all users of the variant (zeros count)
EXPERIMENT_METRICS = (CTR, USER_CLICK_RATE, CONVERSION, REVENUE_PER_USER)

# --- maps ---
# explanations and the business workshop (course_lib.maps, course_lib.innovation)
REASON = "reason"              # a ranker feature in words, e.g. "similarity to your history"
CONTRIBUTION = "contribution"  # that reason's part of the score (weight × standardised feature)
INTEREST = "interest"          # a user's share of interactions in a category (sums to 1)
INTERACTIONS = "interactions"  # click + add_to_cart + purchase events of a product
PRODUCTS_COUNT = "products"    # products in a group (category, price band)
NO_INTERACTION = "no_interaction"  # products of a group without any interaction
CATEGORY_A = "category_a"      # a category pair / rule "a -> b": the antecedent
CATEGORY_B = "category_b"      # ... and the consequent
BASKETS = "baskets"            # baskets (users or sessions) that hold both categories
SUPPORT = "support"            # baskets with both / all baskets
CONFIDENCE = "confidence"      # baskets with both / baskets with a
LIFT = "lift"                  # support / (support(a) × support(b)); 1 = independent
COMPLEMENT = "complement"      # whether the taxonomy lists the pair as complements
PRICE_BAND = "price_band"      # 0 = cheapest quantile band of the product's category
VISITORS = "visitors"          # revenue = visitors × CTR × conversion × order value
ORDER_VALUE = "order_value"    # revenue per order
