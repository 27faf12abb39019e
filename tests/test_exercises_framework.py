"""The checker framework, and every registered exercise against its solution and wrong answers."""
from __future__ import annotations

import pytest

from course_lib import exercises
from course_lib.exercises import (
    check, exercise, expect_close, expect_equal, registered, solution_for, stub, wrong_answers_for,
)


def test_solution_passes(capsys):
    assert check("00.add", lambda a, b: a + b) is True
    assert capsys.readouterr().out == "✅ 00.add: correct!\n"


def test_stub_is_not_attempted(capsys):
    assert check("00.add", stub) is False
    assert capsys.readouterr().out == (
        "⏭ 00.add: not attempted yet — the lesson continues with course_lib's implementation.\n"
    )


def test_wrong_answer_gets_specific_hint(capsys):
    assert check("00.add", lambda a, b: a - b) is False
    out = capsys.readouterr().out
    assert out.startswith("❌ 00.add: add(1, 2) should return 3, got -1.")
    assert "Hint: Return the sum" in out
    assert out.count("\n") == 1


def test_other_exceptions_are_reported_not_raised(capsys):
    def broken(a, b):
        return {}[a]

    assert check("00.add", broken) is False
    assert capsys.readouterr().out == "❌ 00.add: your function raised KeyError: 1\n"


def test_learner_assertion_is_not_mistaken_for_checker_hint(capsys):
    def asserting(a, b):
        raise AssertionError("my own check")  # plain raise: pytest rewrites `assert` here

    assert check("00.add", asserting) is False
    out = capsys.readouterr().out
    assert out == "❌ 00.add: your function raised AssertionError: my own check\n"


def test_expect_close_hint(capsys):
    assert check("00.demo_half", lambda x: x / 2 + 1e-9) is True
    assert check("00.demo_half", lambda x: None) is False
    assert capsys.readouterr().out.endswith(
        "❌ 00.demo_half: half(3) should return about 1.5, got None. Hint: Halve it.\n"
    )


def test_checker_crash_on_odd_return_value_is_one_line(capsys):
    assert check("00.demo_pair", lambda: 5) is False
    assert capsys.readouterr().out == (
        "❌ 00.demo_pair: checking your answer failed with TypeError: cannot unpack non-iterable "
        "int object — look at what your function returns.\n"
    )


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match=r"unknown exercise '99.nope'.*00\.add"):
        check("99.nope", stub)


def test_bad_name_and_duplicate_registration_are_refused():
    with pytest.raises(ValueError, match="must look like"):
        exercise("parse_price", solution=stub, wrong=[])
    with pytest.raises(ValueError, match="already registered"):
        # registered from this test module, not from course_lib.exercises
        exercise("00.add", solution=stub, wrong=[])(lambda fn: None)


def test_registry_lookups():
    assert "00.add" in registered()
    assert solution_for("00.add")(2, 3) == 5
    assert len(wrong_answers_for("00.add")) >= 1
    with pytest.raises(NotImplementedError):
        stub(1, b=2)


# two test-only exercises, registered by this module (they also go through the generic test)
@exercise("00.demo_half", hint="Halve it.", solution=lambda x: x / 2, wrong=[lambda x: x // 2])
def _check_close(fn):
    expect_close(fn(3), 1.5, "half(3)")


@exercise("00.demo_pair", solution=lambda: (1, 2), wrong=[lambda: (2, 1)])
def _check_pair(fn):
    a, b = fn()  # a learner returning an int makes the checker itself raise TypeError
    expect_equal((a, b), (1, 2), "pair()")


# -- every exercise of every lesson --------------------------------------------------------

ALL = registered()  # imports every course_lib/exercises_*.py


@pytest.mark.parametrize("name", ALL)
def test_every_exercise_accepts_solution_rejects_stub_and_wrong(name, capsys):
    passed = check(name, solution_for(name))
    assert passed is True, capsys.readouterr().out
    assert capsys.readouterr().out == f"✅ {name}: correct!\n"
    assert check(name, stub) is False
    assert capsys.readouterr().out.startswith(f"⏭ {name}: not attempted yet")
    wrong = wrong_answers_for(name)
    assert wrong, f"{name} registers no wrong answers"
    for index, answer in enumerate(wrong):
        assert check(name, answer) is False, f"{name}: wrong answer #{index} was accepted"
        out = capsys.readouterr().out
        assert out.startswith(f"❌ {name}: ") and out.count("\n") == 1, out


def test_exercises_from_lesson_03_on_have_at_least_three_wrong_answers():
    later = [name for name in ALL if name[:2] >= "03"]
    assert later
    for name in later:
        assert len(wrong_answers_for(name)) >= 3, name


def test_exercise_modules_register_their_own_prefix():
    # check() finds "NN.topic" by importing course_lib.exercises_NN, so the names must match
    for module in exercises._exercise_modules():
        prefix = module.rsplit("_", 1)[1]
        names = [n for n, ex in exercises._REGISTRY.items() if ex.checker.__module__ == module]
        assert names, f"{module} registers no exercise"
        assert all(n.startswith(f"{prefix}.") for n in names), (module, names)
    assert exercises._REGISTRY["00.add"].checker.__module__ == "course_lib.exercises"
