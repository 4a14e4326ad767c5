"""The protocol's scoring on hand-made tables: each workload's metric (the
validation error of a classifier, the loss otherwise) drives the choice of
lr and the ranking, a diverged run scores +inf, and the plateau check tells
a curve that has levelled off from one still falling."""

import numpy as np
import pandas as pd
import pytest

from optbench.suite.protocol import scoring
from optbench.suite.studies.scoring import best_lrs


def rows(workload, lr, seed, losses, accs, diverged=False, phase="tune", optimizer="sgd"):
    cell = f"{workload}-{optimizer}-{lr}-{seed}"
    return [{"cell": cell, "workload": workload, "optimizer": optimizer, "lr": lr, "seed": seed, "epoch": e,
             "step": 10 * e, "val_loss": l, "val_acc": a, "diverged": diverged and e == len(losses) - 1,
             "phase": phase}
            for e, (l, a) in enumerate(zip(losses, accs))]


def table():
    # lr 0.1: the lower loss but more errors; lr 1: overconfident (higher loss), fewer errors.
    data = []
    for seed in (0, 1):
        data += rows("clf", 0.1, seed, [2.3, 1.2], [0.1, 0.55])
        data += rows("clf", 1.0, seed, [2.3, 1.6], [0.1, 0.62])
        data += rows("reg", 0.1, seed, [1.0, 0.20], [np.nan, np.nan])
        data += rows("reg", 1.0, seed, [1.0, 0.30], [np.nan, np.nan])
    return pd.DataFrame(data)


def test_a_classifier_is_scored_on_its_error_a_regression_on_its_loss():
    df = scoring.scored(table(), {"clf": "val_error", "reg": "val_loss"})
    last = scoring.last_scores(df)
    clf, reg = last[last["workload"] == "clf"], last[last["workload"] == "reg"]
    assert np.allclose(clf["final_score"], 1 - clf["val_acc"])
    assert np.allclose(reg["final_score"], reg["val_loss"])
    best = best_lrs(last, ["workload", "optimizer"], "final_score").set_index("workload")["lr"]
    assert best["clf"] == 1.0 and best["reg"] == 0.1
    # Scored on the loss, the classifier would pick the other lr: the metric decides.
    by_loss = best_lrs(scoring.last_scores(scoring.scored(table(), {})), ["workload", "optimizer"])
    assert by_loss.set_index("workload")["lr"]["clf"] == 0.1


def test_a_diverged_run_scores_inf_and_loses_its_lr():
    data = table()
    bad = (data["workload"] == "reg") & (data["lr"] == 0.1) & (data["seed"] == 1)
    data.loc[bad & (data["epoch"] == 1), "diverged"] = True
    last = scoring.last_scores(scoring.scored(data, {"reg": "val_loss"}))
    assert np.isinf(last[last["cell"] == "reg-sgd-0.1-1"]["final_score"]).all()
    best = best_lrs(last, ["workload", "optimizer"], "final_score").set_index("workload")["lr"]
    assert best["reg"] == 1.0


@pytest.mark.parametrize("tail, flagged", [(0.0, False), (-0.3, True)])
def test_the_plateau_check_flags_a_curve_still_falling(tail, flagged):
    epochs = np.arange(41)
    # Falls fast, then either stays flat or keeps falling by `tail` over the last half.
    curve = 1.0 + np.exp(-epochs / 3) + tail * np.clip((epochs - 20) / 20, 0, None)
    conf = pd.DataFrame({"workload": "w", "optimizer": "adam", "epoch": epochs, "score": curve})
    rank = pd.DataFrame({"workload": ["w"], "optimizer": ["adam"], "rank": [1]})
    optimizer, fall = scoring.plateau(conf, rank, ["w"])["w"]
    assert optimizer == "adam" and (fall > scoring.PLATEAU_TOLERANCE) == flagged
    if not flagged:
        assert abs(fall) < 1e-3


def test_pairwise_gives_how_sure_and_how_often():
    final = pd.DataFrame({"workload": "w", "optimizer": ["a"] * 3 + ["b"] * 3,
                          "final_score": [1.0, 2.0, 3.0, 2.0, 4.0, 4.0]})
    sure = scoring.pairwise(final, "w", ["a", "b"])
    often = scoring.pairwise(final, "w", ["a", "b"], per_run=True)
    assert often.loc["a", "b"] == pytest.approx(7.5 / 9) and often.loc["b", "a"] == pytest.approx(1.5 / 9)
    assert 0.5 < sure.loc["a", "b"] <= 1 and sure.loc["a", "b"] + sure.loc["b", "a"] == pytest.approx(1, abs=0.05)
    assert np.isnan(sure.loc["a", "a"])
