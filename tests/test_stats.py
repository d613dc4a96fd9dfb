"""The noise behind the claims: paired bootstrap and binomial standard errors against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnfkit.repro.stats import binomial_difference, paired_bootstrap, paired_bootstrap_statistic


def test_paired_bootstrap_standard_error_matches_the_analytic_one():
    """For a mean of n paired differences the bootstrap SE approaches std(d) / sqrt(n) (ddof 0)."""
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 1.0, 400)
    b = a - 0.1 + rng.normal(0.0, 0.5, 400)  # paired: a shared part cancels in the difference
    st = paired_bootstrap(a, b, seed=1)
    d = a - b
    assert st["difference"] == pytest.approx(d.mean(), abs=1e-12)
    assert st["se"] == pytest.approx(d.std() / math.sqrt(400), rel=0.08)
    assert st["ci95"][0] < st["difference"] < st["ci95"][1]
    assert st["z"] == pytest.approx(st["difference"] / st["se"])
    assert st["n"] == 400 and "400 test items" in st["statistic"]
    assert paired_bootstrap(a, b, seed=1) == st  # seeded: the same interval every time


def test_pairing_removes_the_shared_spread():
    """Two models that differ by a constant on items of very different difficulty: the difference is exact."""
    items = np.linspace(1.0, 9.0, 30)
    st = paired_bootstrap(items, items + 0.5)
    assert st["se"] == pytest.approx(0.0, abs=1e-12) and st["z"] == -math.inf


def test_a_pooled_statistic_is_resampled_by_item():
    x = np.arange(10.0)
    st = paired_bootstrap_statistic(lambda i: x[i].max(axis=-1), lambda i: x[i].min(axis=-1), 10, seed=0)
    assert st["mean_a"] == 9 and st["mean_b"] == 0 and st["se"] > 0


@pytest.mark.parametrize(
    "a,b,match",
    [([1.0, np.nan], [1.0, 2.0], "NaN"), ([1.0, 2.0], [1.0], "one length"), ([1.0], [2.0], "at least 2")],
)
def test_bad_input_is_refused(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(a, b)


def test_binomial_difference_known_value():
    st = binomial_difference(0.9, 0.8, 100)
    assert st["se"] == pytest.approx(math.sqrt(0.09 / 100 + 0.16 / 100))
    assert st["z"] == pytest.approx(0.1 / 0.05)
    with pytest.raises(ValueError, match="accuracy"):
        binomial_difference(1.2, 0.8, 100)


def test_json_safe_writes_an_infinite_z_as_a_string_that_reads_back():
    import json

    from cnfkit.repro.stats import json_safe

    st = json_safe(paired_bootstrap(np.linspace(1.0, 9.0, 30), np.linspace(1.0, 9.0, 30) + 0.5))
    assert st["z"] == "-inf" and float(json.loads(json.dumps(st, allow_nan=False))["z"]) == -math.inf
