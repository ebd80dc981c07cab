"""The prune stage's pure parts: which channels a channel ratio removes from groups ranked once
(removal_plan), and the bisection over ratios that finds the smallest one meeting a MACs or
parameter target (search_ratio). No model here: tests drive them with hand-made rankings."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass
class RankedGroup:
    """Channels torch-pruning removes together (a root layer's outputs and every channel tied to
    them), ranked once. Positions count channels per channel group: a grouped convolution loses
    a position in each of its groups."""

    root: str  # the layer whose output channels lead the group
    handler: Any  # torch-pruning's pruning function at the root
    importance: torch.Tensor  # ascending
    order: torch.Tensor  # positions, least important first
    min_kept: int  # positions that always stay (max_channel_ratio, round_to, at least one)
    channel_groups: int = 1

    @property
    def size(self) -> int:
        return len(self.order)

    def indices(self, count: int) -> list[int]:
        """The root's channels that removing the `count` least important positions removes."""
        import torch

        least = self.order[:count]
        return torch.cat([least + g * self.size for g in range(self.channel_groups)]).tolist()


def least_kept(size: int, max_ratio: float, round_to: int) -> int:
    """The fewest positions a group may keep: (1 - max_ratio) of them and at least one, rounded
    up to a multiple of round_to, or all of them where that multiple is more."""
    floor = max(1, math.ceil(size * (1 - max_ratio) - 1e-9))
    return min(size, -(-floor // round_to) * round_to)


def removal_plan(
    groups: Sequence[RankedGroup], ratio: float, global_ranking: bool, round_to: int
) -> list[int]:
    """Positions to remove from each group at a channel ratio: round(ratio × all positions) of
    the least important across groups (global), or round(ratio × its size) of each group; never
    below a group's min_kept, and a group that loses any keeps a multiple of round_to (rounded
    down, as torch-pruning does). A larger ratio never removes fewer from any group."""
    import torch

    if global_ranking and groups:
        scores = torch.cat([g.importance for g in groups])
        owner = torch.cat([torch.full((g.size,), i) for i, g in enumerate(groups)])
        rank = torch.cat([torch.arange(g.size) for g in groups])
        removable = torch.tensor([g.size - g.min_kept for g in groups])
        ascending = torch.argsort(scores, stable=True)  # keeps each group's own order among ties
        eligible = ascending[rank[ascending] < removable[owner[ascending]]]
        taken = eligible[: round(ratio * len(scores))]
        counts = torch.bincount(owner[taken], minlength=len(groups)).tolist()
    else:
        counts = [min(g.size - g.min_kept, round(ratio * g.size)) for g in groups]
    plan = []
    for group, count in zip(groups, counts, strict=True):
        kept = group.size - count
        plan.append(group.size - max(group.min_kept, kept - kept % round_to) if count else 0)
    return plan


@dataclass
class Search:
    ratio: float  # the smallest ratio found that keeps at most the target, or max_ratio when none does
    kept: float  # the share kept there
    iterations: int  # shares measured
    above: tuple[float, float] | None = None  # (ratio, kept) of the next smaller step, when one exists


def search_ratio(
    kept_at: Callable[[float], float], target: float, max_ratio: float, resolution: int
) -> Search:
    """Bisection over the channel ratios k/resolution up to max_ratio for the smallest one that
    keeps at most `target` (kept_at(ratio) must not grow with the ratio). max_ratio is measured
    first, so an unreachable target costs one measurement; then about log2(resolution) more."""
    top = math.floor(max_ratio * resolution + 1e-9)
    iterations = 1
    hi, kept_hi = top, kept_at(top / resolution)
    if kept_hi > target:
        return Search(top / resolution, kept_hi, iterations)
    lo, kept_lo = 0, 1.0  # nothing removed keeps everything
    while hi - lo > 1:
        mid = (lo + hi) // 2
        kept = kept_at(mid / resolution)
        iterations += 1
        if kept > target:
            lo, kept_lo = mid, kept
        else:
            hi, kept_hi = mid, kept
    return Search(hi / resolution, kept_hi, iterations, above=(lo / resolution, kept_lo))


def search_steps(resolution: int, max_ratio: float) -> int:
    """Measurements search_ratio makes for a reachable target (one for max_ratio, then halving)."""
    return 1 + max(0, math.ceil(math.log2(max(1, math.floor(max_ratio * resolution + 1e-9)))))
