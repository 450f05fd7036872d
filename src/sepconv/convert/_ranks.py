"""Choosing each converted layer's rank (its depth multiplier).

Three rules, one per argument of `convert`:

* `rank=r`: the same rank everywhere, clipped per layer to its full rank
  ``min(K, N)`` (beyond it the factorization is already exact).
* `energy=e`: per layer, the smallest rank whose components keep the
  fraction ``e`` of the kernel's squared Frobenius norm, pooled over input
  channels (one rank per layer, since `depth_multiplier` is per layer).
* `budget=f`: the converted model keeps at most the fraction ``f`` of the
  original model's parameters (or MACs). Ranks start at 1 and grow one step at
  a time, each step taken where it keeps the most energy per parameter (or
  MAC) it costs, while the budget allows; the energy counted is each layer's
  fraction of its own kernel's squared norm, so that layers of different
  scales weigh alike. This is the ratio rule of the fractional knapsack
  (Dantzig 1957, "Discrete-variable extremum problems", Operations Research
  5(2)): a greedy heuristic, not an exact optimum, for the integer problem;
  per layer the gains fall with rank and each step costs the same.
  With calibration data (`convert(reconstruct=True)`) the gains are the
  fractions of each layer's *output* energy on that data: the singular values
  of each channel's slice in the metric of its inputs (`data_singular`, see
  `_least_squares.whitened_factors`) replace the kernel's.
"""

import heapq

import numpy as np

from sepconv.convert import _factorize

__all__ = ["budget_ranks", "check_budget", "energy_ranks", "fixed_ranks"]


def fixed_ranks(candidates, rank):
    return [min(rank, c.full_rank) for c in candidates]


def energy_ranks(candidates, energy):
    return [_factorize.smallest_rank(c.singular, energy) for c in candidates]


def _gains(singular):
    """Fraction of the kernel's squared norm each component adds, pooled over channels."""
    squares = np.square(singular).sum(axis=0)
    total = squares.sum()
    return squares / total if total > 0 else np.zeros_like(squares)


def check_budget(candidates, fraction, metric, total_before):
    """The model's cost at rank 1 everywhere; raises if even that exceeds the budget."""
    spend = total_before - sum(c.before[metric] for c in candidates) + sum(c.cost(1)[metric] for c in candidates)
    if spend > fraction * total_before:
        raise ValueError(
            f"budget cannot be met: at rank 1 in every converted layer the model keeps "
            f"{spend / total_before:.4f} of its {metric}. Received: budget={fraction}"
        )
    return spend


def budget_ranks(candidates, fraction, metric, total_before):
    """Greedy ranks meeting `sum(cost) <= fraction * total_before` (see the module docstring).

    Each candidate has `before` (its cost as a regular convolution) and
    `cost(rank)` in the unit of `metric`; the rest of the model is fixed.
    """
    target = fraction * total_before
    spend = check_budget(candidates, fraction, metric, total_before)
    ranks = [1] * len(candidates)
    gains = [_gains(c.singular if c.data_singular is None else c.data_singular) for c in candidates]
    steps = [c.cost(2)[metric] - c.cost(1)[metric] for c in candidates]  # the same at every rank
    heap = [(-gains[i][1] / steps[i], i) for i, c in enumerate(candidates) if c.full_rank > 1]
    heapq.heapify(heap)
    while heap:
        _, i = heapq.heappop(heap)
        if spend + steps[i] > target:
            continue  # this layer's steps never fit again: spending only grows
        spend += steps[i]
        ranks[i] += 1
        if ranks[i] < candidates[i].full_rank:
            heapq.heappush(heap, (-gains[i][ranks[i]] / steps[i], i))
    return ranks
