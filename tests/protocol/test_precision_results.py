"""The committed state-precision run (results/precision, issue 23) says
what its report and the README claim: every optimiser confirmed again at
bf16, bf16-sr and int8 on the float32 confirmation's seeds and lrs; Adam's
quadratic loss worse to nearest but not stochastically; Adam with an 8-bit
state diverging on the two classification MLPs, and nothing else."""

from pathlib import Path

import pytest

from optbench.suite.protocol import scoring
from optbench.suite.reporting.markdown import fmt
from records import committed_protocol  # noqa: E402 (tests/ is on sys.path)

RUN = Path(__file__).resolve().parents[2] / "results" / "precision"


@pytest.fixture(scope="module")
def committed():
    record, df = committed_protocol(RUN)
    return record, df, *scoring.state_changes(df, record["optimizers"], list(record["workloads"]))


def test_each_precision_reruns_the_confirmation_on_its_seeds_and_lrs(committed):
    record, df, table, _ = committed
    assert record["states"] == ["bf16", "bf16-sr", "int8"]
    conf, low = df[df["phase"] == "confirm"], df[df["phase"] == "precision"]
    assert conf["state"].isna().all() or set(conf["state"].dropna()) == {"fp32"}
    key = ["workload", "optimizer"]
    lrs = conf.groupby(key)["lr"].first()
    for (state, w, o), g in low.groupby(["state", *key]):
        assert set(g["lr"]) == {lrs[(w, o)]} and set(g["seed"]) == set(record["confirm_seeds"])
    assert len(table) == 3 * len(record["workloads"]) * len(record["optimizers"])


def test_rounding_to_nearest_costs_adam_on_the_quadratic_and_stochastic_rounding_does_not(committed):
    _, _, table, _ = committed
    at = table.set_index(["state", "workload", "optimizer"])
    rne, sr = at.loc[("bf16", "noisy-quadratic", "adam")], at.loc[("bf16-sr", "noisy-quadratic", "adam")]
    assert rne["lo"] > 0.1 and sr["lo"] <= 0 <= sr["hi"]
    sgd = table[table["optimizer"] == "sgd"]  # no state: nothing to round
    assert (sgd["change"] == 0).all()


def test_the_report_prints_every_paired_change(committed):
    _, _, table, orders = committed
    section = (RUN / "report.md").read_text().split("## State precision")[1].split("\n## ")[0]
    for state, g in table.groupby("state"):
        part = section.split(f"**{state}**")[1]
        for o, r in g.groupby("optimizer", sort=False):
            row = next(line for line in part.splitlines() if line.startswith(f"| **{o}** |"))
            for _, x in r.iterrows():
                if x["change"] == float("inf"):
                    assert "inf (a run diverged)" in row
                else:
                    assert f"{fmt(x['change'], 3)} [{fmt(x['lo'], 3)}, {fmt(x['hi'], 3)}]" in row
    assert len(orders) == 15


def test_an_8_bit_state_makes_adam_diverge_on_the_classification_mlps_and_nothing_else(committed):
    """Most Adam runs with 8-bit state diverge on mnist1d and digits (the
    README: small second moments round to zero); every other run finishes."""
    _, df, _, _ = committed
    low = df[(df["phase"] == "precision")]
    diverged = low.groupby(["state", "optimizer", "workload", "seed"])["diverged"].max().astype(bool)
    adam = diverged.loc["int8", "adam"].groupby("workload").sum()
    assert adam["mnist1d-mlp"] >= 5 and adam["digits-mlp"] >= 5
    assert diverged.sum() == adam["mnist1d-mlp"] + adam["digits-mlp"]
