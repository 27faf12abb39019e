"""Checkers with hints for the course's exercises.

A lesson module ``course_lib/exercises_NN.py`` registers one checker per exercise::

    @exercise("01.parse_price", hint="Strip the currency sign first.",
              solution=reference_parse_price, wrong=[parse_price_keeps_comma])
    def _(fn):
        expect_equal(fn("$1,299.00"), 1299.0, 'parse_price("$1,299.00")')

A checker calls the learner's ``fn`` and raises ``AssertionError`` with a specific hint when
an answer is wrong. In the notebook, ``check("01.parse_price", parse_price)`` prints one line
(pass, hint, or "not attempted") and never raises. ``check`` imports
``course_lib.exercises_NN`` by itself, from the prefix of the name.
"""
from __future__ import annotations

import functools
import importlib
import math
import numbers
import pkgutil
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

Checker = Callable[[Callable[..., Any]], None]

NAME_PATTERN = re.compile(r"(\d\d)\.[A-Za-z_]\w*")
NOT_ATTEMPTED = "not attempted yet — the lesson continues with course_lib's implementation."


@dataclass(frozen=True)
class Exercise:
    """One registered exercise: its checker, a general hint, the reference and wrong answers."""

    name: str
    checker: Checker
    hint: str
    solution: Callable[..., Any]
    wrong: tuple[Callable[..., Any], ...]


_REGISTRY: dict[str, Exercise] = {}


def exercise(
    name: str,
    *,
    solution: Callable[..., Any],
    wrong: Sequence[Callable[..., Any]],
    hint: str = "",
) -> Callable[[Checker], Checker]:
    """Register the decorated checking function ``def _(fn) -> None`` under ``name`` ("NN.topic").

    ``solution`` is the reference answer and ``wrong`` are plausible wrong answers: the test
    suite proves the checker accepts the first and rejects the others.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"exercise name {name!r} must look like '01.parse_price'")

    def register(checker: Checker) -> Checker:
        old = _REGISTRY.get(name)
        if old is not None and old.checker.__module__ != checker.__module__:
            raise ValueError(f"exercise {name!r} is already registered by {old.checker.__module__}")
        _REGISTRY[name] = Exercise(name, checker, hint, solution, tuple(wrong))
        return checker

    return register


def stub(*args: Any, **kwargs: Any) -> Any:
    """What a lesson's unsolved exercise does: raise ``NotImplementedError``."""
    raise NotImplementedError("Exercise: write this part, then run the checker cell below.")


def _exercise_modules() -> list[str]:
    import course_lib

    return sorted(
        f"course_lib.{info.name}"
        for info in pkgutil.iter_modules(course_lib.__path__)
        if info.name.startswith("exercises_")
    )


def _import_if_exists(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:  # a real import error inside the module
            raise


def load_all() -> None:
    """Import every ``course_lib.exercises_*`` module so all exercises are registered."""
    for module in _exercise_modules():
        importlib.import_module(module)


def registered() -> list[str]:
    """Names of all exercises (every ``course_lib.exercises_*`` module is imported first)."""
    load_all()
    return sorted(_REGISTRY)


def get(name: str) -> Exercise:
    """The exercise ``name``, importing ``course_lib.exercises_NN`` if needed; else ``KeyError``."""
    if name not in _REGISTRY:
        match = NAME_PATTERN.fullmatch(name)
        if match:
            _import_if_exists(f"course_lib.exercises_{match.group(1)}")
    if name not in _REGISTRY:
        raise KeyError(f"unknown exercise {name!r}; known exercises: {', '.join(registered())}")
    return _REGISTRY[name]


def solution_for(name: str) -> Callable[..., Any]:
    """The reference answer registered for ``name``."""
    return get(name).solution


def wrong_answers_for(name: str) -> list[Callable[..., Any]]:
    """The plausible wrong answers registered for ``name``."""
    return list(get(name).wrong)


def check(name: str, fn: Callable[..., Any]) -> bool:
    """Check the learner's ``fn`` for exercise ``name``; print one line; True only if correct.

    Exceptions from the learner's code are reported, never raised. An unknown ``name``
    raises ``KeyError``.
    """
    ex = get(name)
    raised: list[BaseException] = []

    @functools.wraps(fn)
    def learner(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raised.append(err)
            raise

    try:
        ex.checker(learner)
    except Exception as err:
        from_learner = any(err is e for e in raised)
        if from_learner and isinstance(err, NotImplementedError):
            print(f"⏭ {name}: {NOT_ATTEMPTED}")
        elif from_learner:
            print(f"❌ {name}: your function raised {_describe(err)}")
        elif isinstance(err, AssertionError):
            message = str(err) or "that is not the expected answer."
            hint = f" Hint: {ex.hint}" if ex.hint and ex.hint not in message else ""
            print(f"❌ {name}: {message}{hint}".replace("\n", " "))
        else:
            print(f"❌ {name}: checking your answer failed with {_describe(err)} "
                  "— look at what your function returns.".replace("\n", " "))
        return False
    print(f"✅ {name}: correct!")
    return True


def _describe(err: BaseException) -> str:
    message = str(err).replace("\n", " ")
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


# -- helpers for writing checkers ------------------------------------------------------------

def expect_equal(got: Any, expected: Any, call: str) -> None:
    """Raise ``AssertionError("<call> should return <expected>, got <got>")`` unless equal."""
    if got != expected:
        raise AssertionError(f"{call} should return {expected!r}, got {got!r}.")


def expect_close(got: Any, expected: float, call: str, tol: float = 1e-6) -> None:
    """Like :func:`expect_equal` for floats, within absolute/relative tolerance ``tol``."""
    close = isinstance(got, numbers.Real) and math.isclose(got, expected, rel_tol=tol, abs_tol=tol)
    if not close:
        raise AssertionError(f"{call} should return about {expected!r}, got {got!r}.")


# -- the built-in demo exercise -----------------------------------------------------------

def _add(a: float, b: float) -> float:
    return a + b


@exercise(
    "00.add",
    hint="Return the sum of the two arguments.",
    solution=_add,
    wrong=[lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a],
)
def _check_add(fn: Callable[..., Any]) -> None:
    for a, b in [(1, 2), (0, 0), (-3, 5), (2.5, 0.25)]:
        expect_equal(fn(a, b), a + b, f"add({a!r}, {b!r})")
