"""Every bad input of `bad_inputs.CASES` gets exit status 2, a one-line reason, no traceback and no output
file; the odd but usable inputs of `bad_inputs.WARNED` work and say what is odd about them (issue 30)."""
import pytest

from bad_inputs import CASES, WARNED, Inputs, files_under, stderr_is_clean
from ventkit.cli import main


@pytest.fixture
def inputs(tmp_path, tiny_model, subjects):
    return Inputs(tmp_path, tiny_model, subjects["training_seg_01"])


def test_the_suite_covers_forty_kinds_of_bad_input():
    assert len({c.name for c in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES + WARNED, ids=lambda c: c.name)
def test_bad_input(case, inputs, capsys):
    argv = case.argv(inputs)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == case.code, err
    assert stderr_is_clean(err, case.message), err
    if case.code:
        assert not files_under(inputs.out)
