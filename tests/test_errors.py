"""Tests of cxcr4score.errors."""

from cxcr4score.errors import InputError


def test_input_error_lists_every_problem_on_its_own_line():
    error = InputError(["a.tsv row 1: slide_id is empty", "a.tsv row 2: mpp 'x' is bad"])
    assert error.problems == ["a.tsv row 1: slide_id is empty", "a.tsv row 2: mpp 'x' is bad"]
    assert str(error).splitlines() == error.problems
