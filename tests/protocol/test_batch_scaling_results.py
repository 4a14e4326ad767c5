"""The committed lr-against-batch-size run (results/batch-scaling) says what
its report claims: each workload crossed with batch sizes 16 to 1024, every
chosen lr bracketed, and a fit with an interval per optimiser and workload
that the report prints as the stored runs give it."""

import math
from pathlib import Path

import pytest

from optbench.suite.protocol import scoring
from optbench.suite.protocol.stats import scaling_verdict
from optbench.suite.reporting.markdown import fmt
from records import assert_chosen_inside_grids, committed_protocol  # noqa: E402 (tests/ is on sys.path)

RUN = Path(__file__).resolve().parents[2] / "results" / "batch-scaling"
SIZES = [16, 32, 64, 128, 256, 512, 1024]


@pytest.fixture(scope="module")
def committed():
    record, df = committed_protocol(RUN)
    table = scoring.batch_scaling(scoring.tuned(df), record["variants"], record["optimizers"], record["edges"])
    return record, df, table


def test_each_workload_is_crossed_with_every_batch_size(committed):
    record, df, _ = committed
    assert record["batch_sizes"] == SIZES
    bases = {v["workload"] for v in record["variants"].values()}
    assert bases == {"mnist1d-mlp", "digits-mlp"} and len(record["variants"]) == 2 * len(SIZES)
    ran = df.groupby("workload")["batch_size"].unique()
    for name, v in record["variants"].items():
        assert list(ran[name]) == [str(v["batch_size"])]


def test_every_chosen_lr_is_bracketed(committed):
    assert_chosen_inside_grids(committed[0])


def test_every_optimiser_has_a_fit_with_an_interval_and_the_report_prints_it(committed):
    record, _, table = committed
    assert len(table) == 2 * len(record["optimizers"])
    section = (RUN / "report.md").read_text().split("## Learning rate against batch size")[1].split("\n## ")[0]
    for _, r in table.iterrows():
        assert all(math.isfinite(x) for x in (r["k"], r["lo"], r["hi"])) and r["lo"] <= r["hi"]
        assert r["rule"] == scaling_verdict(r["lo"], r["hi"]) and r["seeds"] == len(record["tuning_seeds"])
        row = next(line for line in section.splitlines()
                   if line.startswith(f"| `{r['workload']}` | **{r['optimizer']}** |"))
        assert f"{fmt(r['k'], 2)} [{fmt(r['lo'], 2)}, {fmt(r['hi'], 2)}] | {r['rule']} |" in row
