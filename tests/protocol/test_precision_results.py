"""The committed state-precision run (results/precision, issue 23) says
what its report and the README claim: every optimiser confirmed again at
bf16 and bf16-sr on the float32 confirmation's seeds and lrs, and Adam's
quadratic loss worse to nearest but not stochastically."""

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
    assert record["states"] == ["bf16", "bf16-sr"]
    conf, low = df[df["phase"] == "confirm"], df[df["phase"] == "precision"]
    assert conf["state"].isna().all() or set(conf["state"].dropna()) == {"fp32"}
    key = ["workload", "optimizer"]
    lrs = conf.groupby(key)["lr"].first()
    for (state, w, o), g in low.groupby(["state", *key]):
        assert set(g["lr"]) == {lrs[(w, o)]} and set(g["seed"]) == set(record["confirm_seeds"])
    assert len(table) == 2 * len(record["workloads"]) * len(record["optimizers"])


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
                assert f"{fmt(x['change'], 3)} [{fmt(x['lo'], 3)}, {fmt(x['hi'], 3)}]" in row
    assert len(orders) == 10
