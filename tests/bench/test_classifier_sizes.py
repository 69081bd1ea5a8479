"""bench/classifier_sizes.py's joint choice of a long request's thresholds: within the benign
budget, the most attacks caught, never under the request's own threshold."""

from __future__ import annotations

import numpy as np

from bench.classifier_sizes import OFF, Readers, joint_thresholds


def scores_of(**kinds: tuple[list[float], list[float], list[float]]) -> dict:
    """Half 0's scores per kind: (sequence row, views, short windows); no segment head."""
    out = {}
    for kind, (sequence, views, short) in kinds.items():
        zeros = [0.0] * len(sequence)
        out[0, kind] = tuple(np.array(x) for x in (sequence, views, zeros, short))
    return out


def test_the_budget_goes_to_the_reader_that_catches_the_most() -> None:
    # One benign flag of eight is allowed. The sequence row fires on benign requests (0.95 and
    # 0.9, each twice) as often as on attacks; the one benign view at 0.93 is the flag worth
    # spending: with views at the floor, three padded attacks of four are caught.
    scores = scores_of(
        benign=([0.95, 0.9, 0.1, 0.1], [0.93, 0.2, 0.2, 0.2], [0.1] * 4),
        benign_one_line=([0.95, 0.9, 0.1, 0.1], [0.2] * 4, [0.1] * 4),
        padded=([0.95, 0.1, 0.1, 0.1], [0.92, 0.94, 0.96, 0.5], [0.1] * 4),
        inline=([0.1] * 4, [0.1] * 4, [0.97, 0.98, 0.1, 0.1]),
    )
    assert joint_thresholds(scores, budget=1 / 8, floor=0.6) == Readers(OFF, 0.6, 0.6)
    # With no benign flag to spend, the view sits just above the benign 0.93.
    strict = joint_thresholds(scores, budget=0.0, floor=0.6)
    assert strict == Readers(OFF, float(np.nextafter(0.93, np.inf)), 0.6)


def test_no_threshold_is_chosen_under_the_request_threshold() -> None:
    # Attacks at 0.7 and benign requests at 0.3: every reader may sit anywhere between, and
    # sits at the floor, never under it, though 0.3 would pass every benign request too.
    scores = scores_of(
        benign=([0.3] * 4, [0.3] * 4, [0.3] * 4),
        benign_one_line=([0.3] * 4, [0.3] * 4, [0.3] * 4),
        padded=([0.7] * 4, [0.7] * 4, [0.5] * 4),
        inline=([0.5] * 4, [0.5] * 4, [0.7] * 4),
    )
    joint = joint_thresholds(scores, budget=0.5, floor=0.6)
    assert min(joint.crop, joint.view, joint.short) == 0.6
    assert joint.short == 0.6  # the only reader that catches the inline attacks


def test_a_gain_on_one_kind_of_attack_is_not_bought_with_another() -> None:
    # One benign flag of four is allowed: benign A's sequence row (0.9) or benign B's view
    # (0.95). The views catch the padded and inline attacks (0.93), the sequence row the whole
    # long ones (0.85): the budget buys one or the other.
    low = [0.1, 0.1]
    scores = scores_of(
        benign=([0.9, 0.1], [0.1, 0.95], low),
        benign_one_line=(low, low, low),
        padded=(low, [0.93, 0.93], low),
        inline=(low, [0.93, 0.93], low),
        whole_attack=([0.85, 0.85], low, low),
    )
    free = joint_thresholds(scores, budget=0.25, floor=0.6)
    assert free.view == 0.6 and free.crop > 0.9  # two kinds caught, the whole ones lost
    kept = joint_thresholds(scores, budget=0.25, floor=0.6, keep={"whole_attack": 1.0})
    assert kept.crop == 0.6 and kept.view > 0.95  # the whole ones kept
