"""The per-model success study: its routing metrics, source splits, baselines and predictors,
on tiny synthetic arrays (no model is loaded, no embedding computed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from classifiers.training import routing_study as rs
from classifiers.training.common import STRONG_MODEL, WEAK_MODEL
from classifiers.training.metrics import apgr

# ----------------------------------------------------------------------------- metrics


def test_a_constant_score_routes_no_better_than_random() -> None:
    rng = np.random.default_rng(0)
    weak = rng.integers(0, 2, 200).astype(float)
    strong = np.maximum(weak, rng.integers(0, 2, 200))
    assert rs.pair_apgr(np.zeros(200), weak, strong) == pytest.approx(0.5)
    assert rs.pair_cpt(np.zeros(200), weak, strong) == pytest.approx(0.5, abs=0.01)


def test_the_oracle_score_recovers_the_gap_early_and_its_reverse_late() -> None:
    weak = np.array([0.0, 0.0, 1.0, 0.0])
    strong = np.array([1.0, 0.0, 0.0, 1.0])
    gain = strong - weak
    # by hand: PGR at k = 0..4 is 0, 1, 2, 2, 1 (gap 0.25), trapezoids of width 1/4
    assert rs.pair_apgr(gain, weak, strong) == pytest.approx(1.375)
    assert rs.pair_apgr(-gain, weak, strong) < 0.5
    assert rs.pair_cpt(gain, weak, strong) == pytest.approx(0.25)


def test_ties_score_as_the_average_over_every_tie_order() -> None:
    weak = np.array([0.0, 1.0, 0.0, 0.0, 1.0])
    strong = np.array([1.0, 0.0, 1.0, 1.0, 1.0])
    score = np.array([2.0, 2.0, 1.0, 1.0, 1.0])
    orders = [
        list(a) + list(b)
        for a in itertools.permutations([0, 1])
        for b in itertools.permutations([2, 3, 4])
    ]
    # a strictly decreasing score over each order routes rows in exactly that order
    by_order = [apgr(np.arange(5, 0, -1), weak[list(o)], strong[list(o)]) for o in orders]
    assert rs.pair_apgr(score, weak, strong) == pytest.approx(np.mean(by_order))


def test_apgr_is_undefined_when_the_strong_model_is_not_better() -> None:
    weak = np.array([1.0, 1.0, 0.0])
    strong = np.array([1.0, 0.0, 1.0])
    assert np.isnan(rs.pair_apgr(np.array([0.3, 0.2, 0.1]), weak, strong))
    assert np.isnan(rs.pair_cpt(np.array([0.3, 0.2, 0.1]), weak, strong))


# ----------------------------------------------------------------------------- source splits


def test_leaving_one_group_out_never_trains_on_the_held_out_group() -> None:
    groups = np.array(["a", "b", "a", "c", "b", "c", "c"])
    seen = []
    for held, train, test in rs.leave_one_group_out(groups):
        assert set(groups[test]) == {held}
        assert held not in set(groups[train])
        assert sorted(np.concatenate([train, test])) == list(range(len(groups)))
        seen.append(held)
    assert seen == ["a", "b", "c"]


def test_group_folds_hold_each_group_out_exactly_once_and_whole() -> None:
    groups = np.array([f"s{i % 11}" for i in range(60)])
    held_out: list[str] = []
    for held, train, test in rs.group_folds(groups, 4):
        assert not set(groups[train]) & set(groups[test])
        assert set(groups[test]) == set(held)
        assert len(train) + len(test) == len(groups)
        held_out += held
    assert sorted(held_out) == sorted(set(groups.tolist()))


def test_no_predictor_or_its_tuning_reads_the_held_out_rows_labels() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(60, 6))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.integers(0, 2, (60, 2)).astype(float)
    groups = np.array([f"t{i % 4}" for i in range(60)])
    _, train, test = next(rs.leave_one_group_out(groups))
    before, _ = rs._fit_predict_all(x, y, groups, groups, train, test)
    flipped = y.copy()
    flipped[test] = 1 - flipped[test]
    after, _ = rs._fit_predict_all(x, flipped, groups, groups, train, test)
    for name in ("knn", "logistic", "mf", "prior"):
        np.testing.assert_array_equal(before[name], after[name])


# ----------------------------------------------------------------------------- baselines


def _clusters() -> tuple[np.ndarray, np.ndarray]:
    """Two tight, orthogonal clusters of unit vectors named "x" and "y"."""
    rng = np.random.default_rng(1)
    a = np.array([1.0, 0.0, 0.0]) + 0.01 * rng.normal(size=(5, 3))
    b = np.array([0.0, 1.0, 0.0]) + 0.01 * rng.normal(size=(5, 3))
    x = np.vstack([a, b])
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.array(["x"] * 5 + ["y"] * 5)


def test_the_prior_gives_a_known_group_its_training_mean() -> None:
    x, groups = _clusters()
    y = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    got = rs.prior_predict(x, y, groups, x[:2], known=np.array(["y", "x"]))
    np.testing.assert_allclose(got, [[0.0, 1.0], [1.0, 0.0]])


def test_the_prior_of_an_unseen_group_is_its_nearest_training_group_and_never_its_labels() -> None:
    x, groups = _clusters()
    y = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    # held-out rows near cluster "y" whose own labels say the opposite: a leak would show
    test = np.array([[0.05, 1.0, 0.0], [0.0, 1.0, 0.05]])
    test /= np.linalg.norm(test, axis=1, keepdims=True)
    got = rs.prior_predict(x, y, groups, test)
    np.testing.assert_allclose(got, [[0.0, 1.0], [0.0, 1.0]])


# ----------------------------------------------------------------------------- predictors


def test_knn_averages_the_nearest_rows_shrunk_toward_the_training_mean() -> None:
    x, _ = _clusters()
    y = np.array([[1.0]] * 5 + [[0.0]] * 5)
    nbrs = rs.knn_neighbours(x, x[:1], 5)
    assert set(nbrs[0]) == set(range(5))
    np.testing.assert_allclose(rs.knn_from_neighbours(nbrs, y, 5, alpha=0.0), [[1.0]])
    # one pseudo-row at the training mean (0.5): (5 + 0.5) / 6
    np.testing.assert_allclose(rs.knn_from_neighbours(nbrs, y, 5, alpha=1.0), [[5.5 / 6]])
    # k larger than the training set uses every row, not a wrong denominator
    all_rows = rs.knn_neighbours(x, x[:1], 50)
    np.testing.assert_allclose(rs.knn_from_neighbours(all_rows, y, 50, alpha=0.0), [[0.5]])


def test_knn_tuning_picks_a_small_k_when_success_follows_the_nearest_prompts() -> None:
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(40, 16))
    x = np.repeat(centres, 6, axis=0) + 0.01 * rng.normal(size=(240, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(rng.integers(0, 2, (40, 1)), 6, axis=0).astype(float)
    groups = np.array([f"g{i % 3}" for i in range(240)])  # each cluster spans every group
    assert rs.tune_knn_k(x, y, groups, ks=(2, 100)) == 2


def test_logistic_regression_fits_soft_targets_and_a_signal() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 4))
    signal = (x[:, 0] > 0).astype(float)
    y = np.column_stack([np.full(400, 0.3), signal])
    p = rs.predict_logistic(x, rs.fit_logistic(x, y, lam=0.01))
    assert p[:, 0].mean() == pytest.approx(0.3, abs=0.01)
    assert p[signal == 1, 1].mean() > 0.8 > 0.2 > p[signal == 0, 1].mean()


def test_matrix_factorization_learns_which_model_succeeds_where() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 6))
    left = (x[:, 0] > 0).astype(float)
    y = np.column_stack([left, 1 - left, left])  # rank one in the prompt
    p = rs.predict_mf(x, rs.fit_mf(x, y, rank=2, steps=300))
    assert rs.brier(p, y) < 0.5 * rs.brier(np.full_like(y, 0.5), y)


# ----------------------------------------------------------------------------- cascade


def test_the_cascade_takes_the_cheapest_confident_model_else_the_most_likely() -> None:
    probs = np.array([[0.9, 0.95, 0.2], [0.1, 0.7, 0.9], [0.1, 0.2, 0.4]])
    order = [0, 1, 2]
    np.testing.assert_array_equal(rs.cheapest_confident(probs, order, 0.6), [0, 1, 2])
    np.testing.assert_array_equal(rs.cheapest_confident(probs, order, 0.8), [0, 2, 2])


def test_routing_quality_and_cost_and_the_random_mix_line() -> None:
    scores = np.array([[0.0, 1.0], [1.0, 1.0]])
    prices = np.array([0.1, 0.9])
    qc = rs.route_quality_cost(np.array([1, 0]), scores, prices)
    assert qc == pytest.approx({"quality": 1.0, "cost": 0.5})
    cheap, best = {"quality": 0.5, "cost": 0.1}, {"quality": 1.0, "cost": 0.9}
    assert rs.mix_line(0.5, cheap, best) == pytest.approx(0.75)
    assert rs.mix_line(2.0, cheap, best) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- verdict


def _view(best: float, prior: float, key: str) -> dict:
    return {
        "knn": {key: best},
        "logistic": {key: best - 0.01},
        "mf": {key: 0.4},
        "prior": {key: prior},
    }


def test_the_verdict_needs_the_margin_over_both_baselines_in_both_views() -> None:
    ok = rs.verdict(_view(0.62, 0.55, "mean_apgr"), _view(0.61, 0.55, "apgr"))
    assert ok["useful"] and ok["checks"]["pooled"]["best"] == "knn"
    near_prior = rs.verdict(_view(0.62, 0.59, "mean_apgr"), _view(0.61, 0.55, "apgr"))
    assert not near_prior["useful"]
    near_random = rs.verdict(_view(0.62, 0.5, "mean_apgr"), _view(0.54, 0.45, "apgr"))
    assert not near_random["useful"]


def test_the_mean_over_groups_leaves_out_groups_without_a_gap() -> None:
    rng = np.random.default_rng(5)
    groups = np.array(["a"] * 50 + ["b"] * 50)
    weak = rng.integers(0, 2, 100).astype(float)
    strong = np.where(groups == "a", 1.0, weak)  # no gap in "b"
    scores = {"oracle": strong - weak, "flat": np.zeros(100)}
    res = rs.per_group_mean_ci(scores, weak, strong, groups, ["a"], reps=50)
    assert res["flat"]["mean_apgr"] == pytest.approx(0.5)
    assert res["oracle"]["mean_apgr"] == pytest.approx(
        rs.pair_apgr(scores["oracle"][:50], weak[:50], strong[:50])
    )
    lo, hi = res["oracle"]["minus"]["flat"]["ci"]
    assert lo <= res["oracle"]["minus"]["flat"]["diff"] <= hi


# ----------------------------------------------------------------------------- end to end


def _table(
    name: str, groups: list[str], models: list[str], seed: int
) -> tuple[rs.Table, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(groups)
    x = rng.normal(size=(n, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    scores = (rng.random((n, len(models))) < 0.3 + 0.4 * (x[:, :1] > 0)).astype(float)
    scores[:, -1] = np.maximum(scores[:, -1], scores[:, 0])  # the last model is the strongest
    table = rs.Table(
        name=name,
        ids=[f"{name}-{i}" for i in range(n)],
        texts=[""] * n,
        groups=np.array(groups),
        models=models,
        scores=scores,
        prices={m: 0.1 + 0.2 * j for j, m in enumerate(models)},
        categories=np.array([g[:2] for g in groups]),
    )
    return table, x


def test_the_study_runs_end_to_end_and_writes_a_marked_card_section() -> None:
    llm, x_llm = _table(
        "llmrouter", [f"t{i % 4}" for i in range(80)], [WEAK_MODEL, "mid", "best"], 6
    )
    pro, x_pro = _table(
        "mmlu_pro", [f"c{i % 2}s{i % 6}" for i in range(90)], [WEAK_MODEL, "other", STRONG_MODEL], 7
    )
    arena, x_arena = _table("routerarena", [f"d{i % 3}" for i in range(30)], ["api-a", "api-b"], 8)
    res_llm = rs.study_llmrouter(llm, x_llm, [(WEAK_MODEL, "best")], reps=10)
    pair = res_llm["pairs"][f"{WEAK_MODEL} -> best"]
    assert set(pair["per_task"]) == {"t0", "t1", "t2", "t3"}
    assert set(pair["pooled"]) == {"knn", "logistic", "mf", "prior"}
    res = {
        "generated": "now",
        "reps": 10,
        "primary_pair": f"{WEAK_MODEL} -> best",
        "llmrouter": res_llm,
        "llmrouter_row_split": rs.study_row_split(llm, x_llm, [(WEAK_MODEL, "best")], reps=10),
        "sensitivity": rs.study_sensitivity(llm, x_llm, (WEAK_MODEL, "best")),
        "mmlu_pro": rs.study_mmlu_pro(pro, x_pro, reps=10),
        "transfer": rs.study_transfer(
            llm, x_llm, [(pro, x_pro, (WEAK_MODEL, STRONG_MODEL)), (arena, x_arena, None)], reps=10
        ),
        "verdict": rs.verdict(pair["mean_over_tasks"], pair["pooled"]),
    }
    unpaired = res["transfer"]["targets"]["routerarena"]
    assert "pooled" not in unpaired and set(unpaired["success_auc"]) == {"api-a", "api-b"}
    assert "weak_model_auc" in res["transfer"]["targets"]["mmlu_pro"]
    text = rs.render(res)
    assert text.startswith(rs.BEGIN) and text.endswith(rs.END)
    assert "**Verdict:" in text
    assert "| t3 |" in text or "| t3 (gap" in text


def test_roc_auc_counts_ties_half_and_orders_perfectly_separated_scores_as_one() -> None:
    y = np.array([0, 0, 1, 1])
    assert rs.roc_auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert rs.roc_auc(y, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert rs.roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    # one positive tied with one negative: 3 of 4 pairs won, 1 tied -> 3.5 / 4
    assert rs.roc_auc(y, np.array([0.1, 0.3, 0.3, 0.4])) == pytest.approx(0.875)
