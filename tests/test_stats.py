"""Mean and Student-t 95% confidence interval over seeds (sparta.stats)."""

import math

import pytest

from sparta import SpartaError
from sparta.stats import mean_ci


def test_interval_matches_a_hand_computation():
    # mean 0.82, sample sd 0.02, t(0.975, df=2) = 4.303 from a t table
    estimate = mean_ci([0.80, 0.84, 0.82])
    assert estimate.mean == pytest.approx(0.82)
    assert estimate.half_width == pytest.approx(4.303 * 0.02 / math.sqrt(3), rel=1e-3)
    assert estimate.low == pytest.approx(0.82 - estimate.half_width)
    assert estimate.n == 3
    assert estimate.format(100) == f"82.00 ± {100 * estimate.half_width:.2f}"


def test_two_seeds_use_the_wide_t_quantile():
    # t(0.975, df=1) = 12.706: two seeds give a very wide interval, not a normal-theory 1.96
    estimate = mean_ci([0.0, 1.0])
    assert estimate.half_width == pytest.approx(12.706 * math.sqrt(0.5) / math.sqrt(2), rel=1e-3)


def test_one_value_has_no_interval():
    estimate = mean_ci([0.5])
    assert estimate.mean == 0.5 and estimate.half_width is None and estimate.low is None
    assert estimate.format(100) == "50.00 ± n/a"


def test_equal_values_give_a_zero_interval_and_more_confidence_a_wider_one():
    assert mean_ci([0.3, 0.3, 0.3]).half_width == pytest.approx(0.0)
    values = [0.1, 0.4, 0.2, 0.3]
    assert mean_ci(values, 0.99).half_width > mean_ci(values, 0.95).half_width > mean_ci(values, 0.5).half_width


@pytest.mark.parametrize(
    "values, confidence, message",
    [
        ([], 0.95, "empty"),
        ([0.1, float("nan")], 0.95, "non-finite"),
        ([0.1, 0.2], 1.0, "confidence"),
    ],
)
def test_bad_input_is_a_clear_error(values, confidence, message):
    with pytest.raises(SpartaError, match=message):
        mean_ci(values, confidence)


def test_binomial_interval_is_clopper_pearson():
    from sparta.stats import binomial_interval

    low, high = binomial_interval(180, 200)  # 90% on 200 images
    assert low == pytest.approx(0.8506, abs=1e-3) and high == pytest.approx(0.9376, abs=1e-3)
    assert binomial_interval(0, 10)[0] == 0.0 and binomial_interval(10, 10)[1] == 1.0
    with pytest.raises(SpartaError):
        binomial_interval(11, 10)


def test_evaluate_records_carry_n_and_their_interval(trained_model, digits_test):
    from sparta import evaluate

    x, y = digits_test
    [record] = evaluate(trained_model, x, y, ["clean"], eps=0.1)
    low, high = record["ci95"]
    assert record["n"] == len(y) and record["correct"] == round(record["accuracy"] * len(y))
    assert 0 <= low <= record["accuracy"] <= high <= 1
