"""The pruning search's pure parts: which channels a ratio removes (removal_plan), the bisection
over ratios (search_ratio) and its errors (check_target_met), on hand-made rankings and step
functions, with no model."""

from __future__ import annotations

import pytest
import torch

from optimize.channel_search import RankedGroup, Search, least_kept, removal_plan, search_ratio, search_steps
from optimize.stages.prune import PruneParams, check_target_met


def _group(scores: list[float], min_kept: int = 1, channel_groups: int = 1) -> RankedGroup:
    importance = torch.tensor(scores)
    order = torch.argsort(importance, stable=True)
    return RankedGroup(
        root="layer",
        handler=None,
        importance=importance[order],
        order=order,
        min_kept=min_kept,
        channel_groups=channel_groups,
    )


def test_global_plan_removes_the_least_important_channels_across_groups():
    a = _group([0.1, 0.2, 0.9, 0.8])
    b = _group([0.15, 0.7, 0.6, 0.5])
    assert removal_plan([a, b], 0.25, global_ranking=True, round_to=1) == [1, 1]  # 0.1, 0.15
    assert removal_plan([a, b], 0.375, global_ranking=True, round_to=1) == [2, 1]  # then 0.2
    assert removal_plan([a, b], 0.5, global_ranking=True, round_to=1) == [2, 2]  # then 0.5


def test_global_plan_never_leaves_a_group_below_min_kept():
    weak = _group([0.01, 0.02, 0.03, 0.04], min_kept=2)
    strong = _group([0.5, 0.6, 0.7, 0.8])
    # The weak group would lose all four; it stops at two and the strong one pays the rest.
    assert removal_plan([weak, strong], 0.5, global_ranking=True, round_to=1) == [2, 2]
    assert removal_plan([weak, strong], 1.0, global_ranking=True, round_to=1) == [2, 3]


def test_local_plan_removes_the_same_share_of_each_group():
    groups = [_group([float(i) for i in range(8)]), _group([float(i) for i in range(16)])]
    assert removal_plan(groups, 0.5, global_ranking=False, round_to=1) == [4, 8]
    assert removal_plan(groups, 0.25, global_ranking=False, round_to=1) == [2, 4]


def test_round_to_keeps_multiples_and_leaves_untouched_groups_alone():
    groups = [_group([float(i) for i in range(20)], min_kept=8), _group([float(i) for i in range(12)])]
    # 20 - 3 = 17 kept rounds down to 16; the second group loses nothing, so its 12 stay 12.
    assert removal_plan(groups, 0.15, global_ranking=False, round_to=8)[0] == 4
    assert removal_plan([groups[1]], 0.0, global_ranking=False, round_to=8) == [0]
    # Rounding down never goes below min_kept.
    assert removal_plan(groups[:1], 0.6, global_ranking=False, round_to=8) == [12]


@pytest.mark.parametrize("global_ranking", [True, False])
def test_a_larger_ratio_never_removes_fewer_channels_from_any_group(global_ranking):
    generator = torch.Generator().manual_seed(0)
    groups = [
        _group(torch.rand(size, generator=generator).tolist(), min_kept=least_kept(size, 0.9, 4))
        for size in (8, 16, 24, 64)
    ]
    plans = [removal_plan(groups, k / 112, global_ranking, round_to=4) for k in range(113)]
    for smaller, larger in zip(plans, plans[1:], strict=False):
        assert all(a <= b for a, b in zip(smaller, larger, strict=True)), (smaller, larger)


def test_least_kept():
    assert least_kept(64, 0.9, 8) == 8  # 6.4 → 7 → 8
    assert least_kept(64, 0.9, 1) == 7
    assert least_kept(10, 1.0, 1) == 1  # at least one channel
    assert least_kept(6, 0.5, 8) == 6  # the multiple of 8 is more than the layer has


def test_indices_repeat_in_every_channel_group():
    group = _group([0.3, 0.1, 0.2], channel_groups=2)
    assert group.indices(2) == [1, 2, 4, 5]


def _staircase(kept_by_step: list[float], resolution: int):
    """kept_at for ratios k/resolution: a non-increasing staircase, recording what was measured."""
    measured = []

    def kept_at(ratio: float) -> float:
        measured.append(ratio)
        return kept_by_step[round(ratio * resolution)]

    return kept_at, measured


def test_search_finds_the_smallest_ratio_that_meets_the_target():
    resolution = 100
    kept = [1 - 0.9 * k / resolution for k in range(resolution + 1)]  # 1.0 down to 0.1
    kept_at, measured = _staircase(kept, resolution)
    found = search_ratio(kept_at, target=0.5, max_ratio=0.9, resolution=resolution)
    assert found.ratio == pytest.approx(0.56)  # 1 - 0.9·0.56 = 0.496 ≤ 0.5 < 1 - 0.9·0.55
    assert found.kept == pytest.approx(0.496)
    assert found.above == (pytest.approx(0.55), pytest.approx(0.505))
    assert measured[0] == pytest.approx(0.9), "the most pruning allowed is measured first"
    assert found.iterations == len(measured) <= search_steps(resolution, 0.9)


def test_search_of_an_unreachable_target_stops_after_one_measurement():
    kept_at, measured = _staircase([1.0 - 0.005 * k for k in range(101)], 100)
    found = search_ratio(kept_at, target=0.25, max_ratio=0.9, resolution=100)
    assert (found.ratio, found.iterations, measured) == (0.9, 1, [0.9])
    assert found.kept == pytest.approx(0.55)


def test_search_over_a_coarse_staircase_ends_at_the_step_that_crosses_the_target():
    kept = [1.0] * 40 + [0.3] * 30 + [0.1] * 31  # from 0.3 straight to 0.1 at k = 70
    kept_at, _ = _staircase(kept, 100)
    found = search_ratio(kept_at, target=0.25, max_ratio=1.0, resolution=100)
    assert (found.ratio, found.kept, found.above) == (0.7, 0.1, (0.69, 0.3))


def test_unreachable_target_is_a_clear_one_line_error():
    params = PruneParams(target_macs=0.1, max_channel_ratio=0.5)
    with pytest.raises(ValueError, match=r"^target_macs 0.1: the most pruning allowed keeps 0.300") as error:
        check_target_met(("macs", 0.1), 0.3, params, Search(0.5, 0.3, 1))
    assert "max_channel_ratio 0.5" in str(error.value) and "\n" not in str(error.value)


def test_overshoot_names_both_steps_and_the_remedies_that_apply():
    search = Search(0.7, 0.1, 8, above=(0.69, 0.3))
    with pytest.raises(ValueError, match="overshoots") as error:
        check_target_met(("params", 0.25), 0.1, PruneParams(target_params=0.25), search)
    message = str(error.value)
    assert "channel ratio 0.6900 keeps 0.300 of the params" in message
    assert "0.7000, overshoots to 0.100" in message
    assert "global_pruning: true" in message and "larger tolerance" in message
    with pytest.raises(ValueError) as error:
        check_target_met(("params", 0.25), 0.1, PruneParams(target_params=0.25, global_pruning=True), search)
    assert "global_pruning" not in str(error.value)


def test_a_target_met_within_tolerance_passes():
    check_target_met(("macs", 0.25), 0.24, PruneParams(target_macs=0.25), Search(0.5, 0.24, 9))
