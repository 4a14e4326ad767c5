"""Reports name the schedule (and the decay setting) where a study sets or
varies one, and nothing changes for a study without: the committed default
study's report regenerates byte for byte."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("tqdm")  # the lent GPU machine runs only the gpu-marked tests
pytest.importorskip("sklearn")

from optbench.suite.studies import report, scoring, store
from optbench.suite.studies.runner import run_study
from optbench.suite.studies.spec import load_study

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_grid_report_regenerates_unchanged(tmp_path):
    """Every line but the one naming the folder it was regenerated from."""
    copy = tmp_path / "optimisers-grid"
    shutil.copytree(ROOT / "results" / "optimisers-grid", copy)
    (copy / report.REPORT).unlink()
    report.write_report(copy)
    committed = (ROOT / "results" / "optimisers-grid" / report.REPORT).read_text().splitlines()
    regenerated = (copy / report.REPORT).read_text().splitlines()
    assert len(committed) == len(regenerated)
    differ = [(a, b) for a, b in zip(committed, regenerated) if a != b]
    assert all(a.startswith("- regenerated from") for a, _ in differ), differ[:3]


def test_name_variants_on_a_hand_made_frame():
    plain = pd.DataFrame({"optimizer": ["sgd", "adam"], "lr": [0.1, 0.01]})
    assert scoring.name_variants(plain) is plain  # no variant column: untouched
    frame = pd.DataFrame({"optimizer": ["adam", "adam", "sgd"],
                          "schedule": ["warmup_cosine(warmup=100)", None, "cosine"],
                          "decay": [None, "weights", None]})
    named = scoring.name_variants(frame)
    assert list(named["optimizer"]) == ["adam, warmup_cosine(warmup=100), decay=all",
                                        "adam, constant, decay=weights", "sgd, cosine, decay=all"]
    assert scoring.variant_columns(frame) == ["schedule", "decay"]
    assert scoring.variant_columns(frame.assign(decay=None)) == ["schedule"]
    assert list(frame["optimizer"]) == ["adam", "adam", "sgd"]  # a copy
    assert scoring.optimizer_order(["adam, cosine", "sgd", "adam", "adam, constant", "zeta", "sgd, step"]) == [
        "sgd", "sgd, step", "adam", "adam, constant", "adam, cosine", "zeta"]
    assert scoring.optimizer_order(["adam", "sgd", "zz", "aa"]) == ["sgd", "adam", "aa", "zz"]


STUDY = """
[study]
name = "sched"
[fixed]
dataset = "digits"
hidden = [8]
epochs = 3
batch_size = 256
[grid]
optimizer = ["sgd", "adam"]
schedule = [{kind = "constant"}, {kind = "warmup_cosine", warmup = 3}]
seed = [0, 1]
[lr]
sgd = [0.1, 0.3]
adam = [0.003, 0.01]
"""


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    root = tmp_path_factory.mktemp("sched")
    (root / "sched.toml").write_text(STUDY)
    out = root / "results"
    run_study(load_study(str(root / "sched.toml")), out, "numpy", quiet=True)
    return out


def test_a_study_that_varies_the_schedule_names_it(varied):
    rows = store.load_results(varied)
    assert set(rows["schedule"].fillna("")) == {"", "warmup_cosine(warmup=3)"}  # the label, in the cells that have one
    text = report.write_report(varied).read_text()
    best = text.split("## Best learning rate per optimiser")[1].split("##")[0]
    for name in ("sgd, constant", "sgd, warmup_cosine(warmup=3)", "adam, constant", "adam, warmup_cosine(warmup=3)"):
        assert f"| {name} |" in best, name
    assert "each optimiser is named with its learning-rate schedule" in text
    assert "also varied" not in text  # folded into the names, not pooled over
    perf = text.split("## Final performance")[1].split("##")[0]
    assert "| adam, warmup_cosine(warmup=3) |" in perf


def test_a_study_that_sets_a_schedule_says_which(tmp_path):
    path = tmp_path / "fixed.toml"
    path.write_text(STUDY.replace('schedule = [{kind = "constant"}, {kind = "warmup_cosine", warmup = 3}]\n', "")
                    .replace("batch_size = 256\n", 'batch_size = 256\nschedule = {kind = "exponential", gamma = 0.9}\n'
                                                   'decay = "weights"\nwd = 0.01\n'))
    out = tmp_path / "out"
    run_study(load_study(str(path)), out, "numpy", quiet=True)
    text = report.write_report(out).read_text()
    assert "| adam, exponential(gamma=0.9), decay=weights |" in text
    assert "learning-rate schedule" in text and "decay=weights: L2 and weight decay on the weight matrices" in text


STATE_STUDY = """
[study]
name = "state"
[fixed]
dataset = "digits"
hidden = [8]
epochs = 3
batch_size = 128
optimizer = "adam"
lr = 0.01
[grid]
state = ["fp32", "bf16", "bf16-sr"]
seed = [0, 1]
"""


def test_a_study_that_varies_the_state_precision_trains_one_population_each_and_names_it(tmp_path):
    """Issue 23: ``state`` is a study axis; the same seeds train at each
    precision (one population each), and the report names the variant."""
    (tmp_path / "state.toml").write_text(STATE_STUDY)
    out = tmp_path / "results"
    run_study(load_study(str(tmp_path / "state.toml")), out, "numpy", quiet=True)
    rows = store.load_results(out)
    last = rows.sort_values("epoch").groupby("cell").tail(1)
    assert sorted(last["state"]) == ["bf16", "bf16", "bf16-sr", "bf16-sr", "fp32", "fp32"]
    loss = last.set_index(["state", "seed"])["val_loss"]
    assert loss[("bf16", 0)] != loss[("fp32", 0)] and loss[("bf16", 0)] == pytest.approx(loss[("fp32", 0)], rel=0.05)
    text = (out / report.REPORT).read_text() if (out / report.REPORT).exists() else report.write_report(out).read_text()
    assert "adam, state=bf16-sr" in text and "adam, state=fp32" in text
