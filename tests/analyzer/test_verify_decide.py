"""Verification decided by Welch's test (pure): verified or ineffective as soon as the test is
conclusive past the `verification.min_calls` floor, pending with what it waits for."""

from __future__ import annotations

import numpy as np

from analyzer.analysis.delta import Moments
from analyzer.verify import decide
from pgarchitect.config import AnalyzerSettings

SETTINGS = AnalyzerSettings()


def sample(values: np.ndarray) -> Moments:
    return Moments(len(values), float(values.sum()), float(((values - values.mean()) ** 2).sum()))


def lognormal(rng: np.random.Generator, mean_ms: float, n: int, sigma: float) -> Moments:
    """n calls of this mean, spread lognormally (sigma 2: over three orders of magnitude)."""
    values = rng.lognormal(0.0, sigma, n)
    return sample(values * (mean_ms / values.mean()))


def test_the_floor_is_30_calls_by_default() -> None:
    assert SETTINGS.verification.min_calls == 30


def test_a_x100_change_is_verified_at_40_calls() -> None:
    rng = np.random.default_rng(1)
    before = lognormal(rng, 18.0, 400, 0.3)
    d = decide(before, lognormal(rng, 0.18, 40, 0.3), SETTINGS)
    assert d.status == "verified", d.note
    assert d.ratio is not None and d.ratio < 0.02
    assert d.p_value is not None and d.p_value < 1e-10
    # the same change below the floor waits, and says for what
    early = decide(before, lognormal(rng, 0.18, 20, 0.3), SETTINGS)
    assert early.status == "pending"
    assert "20 of 30" in early.note


def test_no_change_is_ineffective_at_40_calls() -> None:
    rng = np.random.default_rng(2)
    d = decide(lognormal(rng, 6.0, 400, 0.2), lognormal(rng, 6.0, 40, 0.2), SETTINGS)
    assert d.status == "ineffective", d.note
    assert d.p_not_faster is not None and d.p_not_faster <= 0.01


def test_noise_stays_pending_with_what_it_waits_for() -> None:
    # Calls spread over three orders of magnitude: 40 calls cannot tell a x1.5 gain from none.
    rng = np.random.default_rng(3)
    d = decide(lognormal(rng, 10.0, 60, 2.0), lognormal(rng, 7.0, 40, 2.0), SETTINGS)
    assert d.status == "pending", d.note
    assert "waiting for Welch's test" in d.note
    assert d.p_value is not None and d.p_value > 0.01
    assert d.p_not_faster is not None and d.p_not_faster > 0.01


def test_more_calls_decide_what_fewer_could_not() -> None:
    rng = np.random.default_rng(4)
    before = lognormal(rng, 10.0, 20000, 2.0)
    few = decide(before, lognormal(rng, 6.0, 30, 2.0), SETTINGS)
    many = decide(before, lognormal(rng, 6.0, 20000, 2.0), SETTINGS)
    assert few.status == "pending", few.note
    assert many.status == "verified", many.note
