"""The report's statistics: differences with their 95% t intervals, what each interval says, and how numbers print.

scipy's t tests: a difference of two configurations' means with a Welch interval (unequal
variances, Welch-Satterthwaite degrees of freedom), a difference of two metrics of the same runs
with a paired interval, a mean minus a published value with a one-sample interval. With one run
on a side, or when no run of either side varies ("no spread"), there is no interval; where a side's runs do
not report the metric (a one-layer model has no lower layer's active units), no difference is defined.
"""

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
MARK = "**"  # a difference whose interval excludes zero is printed in bold


def _t_interval(d: float, samples: tuple[np.ndarray, ...], test: Callable[[], Any],
                confidence: float) -> tuple[float, float, float]:
    """``d`` and the bounds of scipy's t ``test``: nan bounds when a sample has one run or ``d`` is nan (a side
    without the metric), ``d, d`` when no sample varies (no spread; scipy's bounds of equal floats, 0.7 against
    0.7, differ in their last bits)."""
    if math.isnan(d) or min(len(s) for s in samples) < 2:
        return d, math.nan, math.nan
    if all(np.ptp(s) == 0 for s in samples):
        return d, d, d
    with warnings.catch_warnings():  # scipy warns of one side of equal counts (active_units); their variance is 0
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        ci = test().confidence_interval(confidence)
    return d, float(ci.low), float(ci.high)


def welch_interval(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its Welch t interval (``_t_interval`` says when there is none)."""
    return _t_interval(float(np.mean(a) - np.mean(b)), (a, b), lambda: stats.ttest_ind(a, b, equal_var=False),
                       confidence)


def paired_interval(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(a - b) over the same runs and its paired t interval."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return _t_interval(float(diff.mean()), (diff,), lambda: stats.ttest_rel(a, b), confidence)


def mean_interval(a: np.ndarray, value: float, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(a) - value and its one-sample t interval: ``value`` lies inside a's interval when it contains 0."""
    shifted = np.asarray(a, dtype=float) - value
    return _t_interval(float(shifted.mean()), (shifted,), lambda: stats.ttest_1samp(shifted, 0.0), confidence)


def decimals(values: pd.Series) -> int:
    """Decimals for one metric's numbers: 2 for values of 10 and more (nats, distances), else 3."""
    return 2 if values.abs().median() >= 10 else 3


def number(x: float, places: int, signed: bool = False) -> str:
    """``x`` with ``places`` decimals (``signed``: a ``+`` on a positive number); ``-`` where it is not finite."""
    return f"{x:{'+' if signed else ''}.{places}f}" if math.isfinite(x) else "-"


def spread(values: pd.Series, places: int) -> str:
    """``mean ± sd`` over the runs, the mean alone for one run, or ``-`` where no run reports the metric."""
    if values.isna().all():
        return number(math.nan, places)
    mean = number(values.mean(), places)
    return f"{mean} ± {number(values.std(ddof=1), places)}" if len(values) > 1 else mean


class IntervalKind(Enum):
    """What an interval says of its difference; each value is the report's word for it.

    ``HIGHER`` or ``LOWER``: the interval excludes zero; ``NOISE``: it contains zero; ``ONE_RUN``
    and ``NO_SPREAD``: why there is no interval (one run on a side; no run of either side varies);
    ``NOT_DEFINED``: a side's runs do not report the metric, so there is no difference.
    """

    HIGHER = "higher"
    LOWER = "lower"
    NOISE = "within the noise"
    NO_SPREAD = "no spread"
    ONE_RUN = "n = 1"
    NOT_DEFINED = "not defined"

    @property
    def resolved(self) -> bool:
        """Whether the interval excludes zero (the difference has a direction)."""
        return self in (IntervalKind.HIGHER, IntervalKind.LOWER)

    @property
    def exists(self) -> bool:
        """Whether there is an interval at all."""
        return self not in (IntervalKind.ONE_RUN, IntervalKind.NO_SPREAD, IntervalKind.NOT_DEFINED)


@dataclass(frozen=True)
class Interval:
    """A difference with its 95% interval, as ``welch_interval`` and its kin return it, printed with a metric's
    decimals (``signed``: with a ``+`` on a positive difference)."""

    d: float
    lo: float
    hi: float
    decimals: int
    signed: bool = False

    @property
    def kind(self) -> IntervalKind:
        """What the interval says: its direction where it excludes zero, else why it cannot tell."""
        if math.isnan(self.d):
            return IntervalKind.NOT_DEFINED
        if math.isnan(self.lo):
            return IntervalKind.ONE_RUN
        if self.lo == self.hi:
            return IntervalKind.NO_SPREAD
        return IntervalKind.HIGHER if self.lo > 0 else IntervalKind.LOWER if self.hi < 0 else IntervalKind.NOISE

    @property
    def resolved(self) -> bool:
        return self.kind.resolved

    @property
    def exists(self) -> bool:
        return self.kind.exists

    def number(self) -> str:
        """The difference alone."""
        return number(self.d, self.decimals, self.signed)

    def text(self) -> str:
        """``d [lo, hi]``, or ``d (n = 1)``, ``d (no spread)`` and ``- (not defined)`` where there is none."""
        if not self.exists:
            return f"{self.number()} ({self.kind.value})"
        return f"{self.number()} [{number(self.lo, self.decimals)}, {number(self.hi, self.decimals)}]"

    def cell(self) -> str:
        """The text for a table, bold where the interval excludes zero."""
        return f"{MARK}{self.text()}{MARK}" if self.resolved else self.text()
