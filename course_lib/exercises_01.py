"""Exercise checkers of lesson 01 (data cleaning).

The learner writes one small function per exercise; the reference answers are thin wrappers
around ``course_lib.cleaning``, so the lesson can continue with the library's steps.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from .cleaning import normalize_size_text, parse_price_text, scrub_pii_text, squeeze
from .exercises import exercise, expect_close, expect_equal
from .taxonomy import VOLUME

# =========================================================================================
# 01.parse_price
# =========================================================================================
# (raw price, expected, what the case is about)
PRICE_CASES: tuple[tuple[str, float | None, str], ...] = (
    ("$12.34", 12.34, "Strip the '$' sign before converting."),
    ("USD 49.99", 49.99, "Some shops write the currency as 'USD' before the number."),
    ("49.99 USD", 49.99, "... or after it."),
    (" 49.99 ", 49.99, "Strip surrounding spaces."),
    ("$1,299.00", 1299.0, "Prices from $1000 on have a thousands comma: remove ',' before float()."),
    ("N/A", None, "Text that is not a number means 'no valid price': return None, don't raise."),
    ("", None, "An empty price is missing: return None."),
    ("-5", None, "A negative price is invalid: return None."),
    ("-USD 77.11", None, "A negative price is invalid, whatever its format: return None."),
)


def _price_keeps_comma(text: str) -> float | None:
    """Wrong: forgets the thousands comma, so '$1,299.00' is not a number."""
    cleaned = text.replace("$", "").replace("USD", "").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if value >= 0 else None


def _price_accepts_negative(text: str) -> float | None:
    """Wrong: a price of -5 is taken at face value."""
    cleaned = text.replace("$", "").replace("USD", "").replace(",", "").strip()
    try:
        return float(cleaned)
    except ValueError:
        return None


@exercise("01.parse_price", solution=parse_price_text,
          wrong=[_price_keeps_comma, _price_accepts_negative],
          hint="remove '$', 'USD', spaces and thousands commas, then float(); return None for "
               "empty, non-numeric and negative prices.")
def _check_parse_price(fn: Callable[[str], Any]) -> None:
    for text, expected, why in PRICE_CASES:
        got = fn(text)
        call = f"parse_price_text({text!r})"
        try:
            if expected is None:
                expect_equal(got, None, call)
            else:
                expect_close(got, expected, call)
        except AssertionError as err:
            raise AssertionError(f"{err} {why}") from None


# =========================================================================================
# 01.scrub_pii
# =========================================================================================
# (review text, expected after scrubbing, what the case is about)
PII_CASES: tuple[tuple[str, str, str], ...] = (
    ("Great pan. Questions? Email me at jane_smith42@gmail.com",
     "Great pan. Questions? Email me at [EMAIL]", "Replace e-mail addresses by '[EMAIL]'."),
    ("Call me on +1 (555) 412-7788 if you want to buy mine.",
     "Call me on [PHONE] if you want to buy mine.",
     "Replace phone numbers such as '+1 (555) 412-7788' by '[PHONE]'."),
    ("Call me on 555-412-7788 if you want to buy mine.",
     "Call me on [PHONE] if you want to buy mine.", "Phones also come as '555-412-7788'."),
    ("Call me on +44 20 4127 7788 if you want to buy mine.",
     "Call me on [PHONE] if you want to buy mine.", "... and as '+44 20 4127 7788'."),
    ("Call me on (555) 412 7788 if you want to buy mine.",
     "Call me on [PHONE] if you want to buy mine.", "... and as '(555) 412 7788'."),
    ("Paid $49.99 for the SN-4120, delivered 2026-01-15. Rating: 5/5.",
     "Paid $49.99 for the SN-4120, delivered 2026-01-15. Rating: 5/5.",
     "Prices, model numbers, dates and ratings are not personal data: keep them."),
    ("The $1,299.00 laptop (model LU-8295X) beats my 10000 mAh power bank.",
     "The $1,299.00 laptop (model LU-8295X) beats my 10000 mAh power bank.",
     "A too greedy pattern eats prices and model numbers: anchor it on the shape of a phone number."),
)


def _scrub_only_emails(text: str) -> str:
    """Wrong: phone numbers stay."""
    return re.sub(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "[EMAIL]", text)


def _scrub_greedy(text: str) -> str:
    """Wrong: any run of digits and punctuation is taken for a phone number, prices too."""
    text = _scrub_only_emails(text)
    return re.sub(r"[$+(]?\d[\d\s().,-]{3,}\d", "[PHONE]", text)


@exercise("01.scrub_pii", solution=scrub_pii_text, wrong=[_scrub_only_emails, _scrub_greedy],
          hint="use one regular expression for e-mail addresses and one for the phone formats; "
               "test it on a text with a price like '$49.99' too.")
def _check_scrub_pii(fn: Callable[[str], Any]) -> None:
    for text, expected, why in PII_CASES:
        got = fn(text)
        if not isinstance(got, str) or squeeze(got) != squeeze(expected):
            raise AssertionError(f"scrub_pii_text({text!r}) should return {expected!r}, "
                                 f"got {got!r}. {why}")


# =========================================================================================
# 01.normalize_volume
# =========================================================================================
VOLUME_CASES: tuple[tuple[str, str, str], ...] = (
    ("1500 ml", "1500 ml", "A clean size stays as it is."),
    ("1500ml", "1500 ml", "Put one space between number and unit."),
    ("750 ML", "750 ml", "Units come in upper case too: compare them case-insensitively."),
    ("1.5L", "1500 ml", "Litres: multiply by 1000."),
    ("1L", "1000 ml", "Litres: multiply by 1000."),
    ("1.5 l", "1500 ml", "A lower-case 'l' means litres as well."),
    ("1.25L", "1250 ml", "Write whole millilitres without decimals: '1250 ml', not '1250.0 ml'."),
    ("40 l", "40000 ml", "Backpacks are measured in litres too."),
)


def to_millilitres(size: str) -> str:
    """'1.5L' -> '1500 ml' (the reference answer: ``cleaning.normalize_size_text``)."""
    return normalize_size_text(size, VOLUME) or size


def _volume_forgets_lower_l(size: str) -> str:
    """Wrong: only an upper-case 'L' is taken for litres."""
    match = re.fullmatch(r"\s*([\d.]+)\s*(ml|ML|L)\s*", size)
    if not match:
        return size
    number = float(match[1]) * (1000 if match[2] == "L" else 1)
    return f"{number:.0f} ml"


def _volume_times_100(size: str) -> str:
    """Wrong: a litre taken for 100 ml."""
    match = re.fullmatch(r"\s*([\d.]+)\s*(ml|l)\s*", size, re.I)
    if not match:
        return size
    number = float(match[1]) * (100 if match[2].lower() == "l" else 1)
    return f"{number:.0f} ml"


@exercise("01.normalize_volume", solution=to_millilitres,
          wrong=[_volume_forgets_lower_l, _volume_times_100],
          hint="read the number and the unit with a regular expression, lower-case the unit, "
               "multiply litres by 1000 and write f'{ml} ml' with a whole number.")
def _check_normalize_volume(fn: Callable[[str], Any]) -> None:
    for size, expected, why in VOLUME_CASES:
        got = fn(size)
        if got != expected:
            raise AssertionError(f"to_millilitres({size!r}) should return {expected!r}, "
                                 f"got {got!r}. {why}")
