"""Populations: cells that share a shape trained together as one batched
model; a single run is a population of one.

A member's records equal, bit for bit, the records of the same run trained
alone (optbench.suite.training.loop.run), timing apart, on NumPy, Numba and
CuPy (the stand-in here): every member's products are the same BLAS calls
whatever P is. A diverging member is frozen without touching its
neighbours; the launches of a population step do not grow with the number
of members; a study gives the same rows and report either way.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from records import assert_records_close  # noqa: E402 (tests/ is on sys.path)

from optbench.suite.training.config import RunConfig
from optbench.suite.training.loop import population_key, run, run_population

BASE = dict(dataset="digits", hidden=(24, 16), epochs=3, batch_size=64)
#: Members that differ in everything a member may differ in.
MEMBERS = [
    dict(optimizer="sgd", lr=0.1, seed=0, init="he"),
    dict(optimizer="momentum", lr=0.05, hyper={"gamma": 0.8}, seed=1, init="xavier", l2=1e-3),
    dict(optimizer="nesterov", lr=0.05, seed=2, init="uniform", wd=1e-2),
    dict(optimizer="rmsprop", lr=3e-3, hyper={"eps": 1e-6}, seed=0, init="orthogonal"),
    dict(optimizer="adadelta", seed=1, init="he"),
    dict(optimizer="adam", lr=3e-3, seed=2, init="he", wd=1e-3),
    dict(optimizer="adam", lr=1e-3, seed=0, init="xavier"),
]


def _configs(backend, **shared):
    return [RunConfig.of(**{**BASE, **shared, **m}, backend=backend) for m in MEMBERS]

@pytest.mark.parametrize("shared", [{}, {"dropout": 0.3}, {"dropout": 0.2, "dropout_mode": "classic"},
                                    {"activation": "prelu", "layer_norms": True},
                                    {"activation": "tanh", "standardize": False, "order": "fixed"},
                                    {"batch_size": "full", "hidden": (64, 64)}])  # products in blocks of rows, on the pool
def test_every_member_equals_its_single_run(backend, shared):
    pop = run_population(_configs(backend.name, **shared))
    for config, records in zip(_configs(backend.name, **shared), pop):
        assert_records_close(run(config), records, rtol=0)  # bit for bit


def test_a_regression_population_equals_its_single_runs():
    configs = [RunConfig.of(dataset="regression", hidden=(16,), epochs=3, batch_size=32, optimizer=o, seed=s,
                         backend="numpy") for o, s in (("sgd", 0), ("adam", 1), ("rmsprop", 2))]
    for config, records in zip(configs, run_population(configs)):
        assert_records_close(run(config), records, rtol=0)


def test_a_diverging_member_leaves_its_neighbours_unchanged(backend):
    """One member with lr = 1e6 diverges -- recorded at the step it happened,
    as its single run records it -- and every other member's records are bit
    for bit those of the population without it."""
    good = _configs(backend.name)
    bad = RunConfig.of(**{**BASE, "optimizer": "sgd", "lr": 1e6, "seed": 1}, backend=backend.name)
    with_bad = run_population(good[:3] + [bad] + good[3:])
    without = run_population(good)
    assert with_bad[3][-1]["diverged"] and with_bad[3][-1]["stop_reason"] == "diverged"
    assert_records_close(run(bad), with_bad[3], rtol=0)
    for a, b in zip(with_bad[:3] + with_bad[4:], without):
        assert_records_close(a, b, rtol=0)  # bit for bit (NaN equal to NaN)


def test_members_stop_on_their_own_criteria():
    """Patience/tol per member: each stops when its single run stops."""
    configs = [RunConfig.of(**{**BASE, "epochs": 12}, optimizer="sgd", lr=lr, tol=0.05, patience=2, seed=0,
                         backend="numpy") for lr in (1e-4, 3e-2, 0.3)]
    pop = run_population(configs)
    for config, records in zip(configs, pop):
        single = run(config)
        assert len(records) == len(single) and records[-1]["stop_reason"] == single[-1]["stop_reason"]
        assert_records_close(single, records, rtol=0)
    assert len({len(r) for r in pop}) > 1  # they did stop at different epochs


def test_members_must_share_a_shape():
    a, b = _configs("numpy")[:2]
    with pytest.raises(ValueError, match="must share"):
        run_population([a, dataclasses.replace(b, batch_size=32)])
    with pytest.raises(ValueError, match="must share"):
        run_population([a, dataclasses.replace(b, workload=dataclasses.replace(b.workload, epochs=4))])
    assert population_key(a) == population_key(b)


def test_checkpoints_of_members_equal_their_single_runs(tmp_path):
    configs = [dataclasses.replace(c, checkpoint=str(tmp_path / f"pop-{i}.npz"))
               for i, c in enumerate(_configs("numpy")[:3])]
    run_population(configs)
    for i, c in enumerate(configs):
        run(dataclasses.replace(c, checkpoint=str(tmp_path / f"single-{i}.npz")))
        with np.load(tmp_path / f"pop-{i}.npz") as p, np.load(tmp_path / f"single-{i}.npz") as s:
            for k in ("W1", "b1", "W3"):
                np.testing.assert_array_equal(p[k], s[k])
            assert int(p["__optimizer__meta"].item().count('"t"')) == 1


def test_launches_per_population_step_do_not_grow_with_members(standin):
    """One launch per rule per step, whatever P: the step's launches are the
    single run's plus a few; host reads per epoch stay constant."""
    from optbench.suite.bench.launches import count_population

    rows = {P: count_population(P, log=lambda *a: None) for P in (2, 24)}
    assert rows[2]["launches_per_step"] == rows[24]["launches_per_step"]
    assert rows[2]["syncs_per_epoch"] == rows[24]["syncs_per_epoch"] == 1
    assert rows[2]["h2d_per_epoch"] == rows[24]["h2d_per_epoch"] <= 2


def test_a_large_population_runs():
    """2,000 members of a small network, one epoch (the GPU check trains
    10,000 of the default MLP)."""
    configs = [RunConfig.of(dataset="blobs", hidden=(4,), epochs=1, batch_size=100, optimizer="adam",
                         lr=float(lr), seed=i % 3, backend="numba")
               for i, lr in enumerate(np.geomspace(1e-4, 1e-1, 2000))]
    records = run_population(configs)
    assert len(records) == 2000 and all(len(r) == 2 for r in records)
    assert records[0][-1]["train_loss"] != records[-1][-1]["train_loss"]


STUDY = """
[fixed]
dataset = "digits"
hidden = [16]
epochs = 3
[grid]
optimizer = ["sgd", "momentum", "adam"]
batch_size = [64, "full"]
seed = [0, 1]
[lr]
sgd = [0.03, 0.3]
momentum = [0.1]
adam = [0.001, 0.01]
"""


def test_a_study_by_populations_gives_the_cell_by_cell_report(tmp_path):
    from optbench.suite.studies import runner
    from optbench.suite.studies.report import write_report
    from optbench.suite.studies.spec import load_study
    from optbench.suite.studies.store import load_results

    (tmp_path / "s.toml").write_text(STUDY)
    study = load_study(str(tmp_path / "s.toml"), backend="numpy")
    texts, frames = {}, {}
    for how, population in (("cells", False), ("populations", True)):
        out = tmp_path / how
        summary = runner.run_study(study, out, "numpy", quiet=True, population=population)
        assert summary.ran == len(study.cells) == 20
        frames[how] = load_results(out).drop(columns=["wall_time", "examples_per_sec"]).sort_values(
            ["cell", "epoch"]).reset_index(drop=True)
        texts[how] = write_report(out).read_text()
    pd.testing.assert_frame_equal(frames["cells"], frames["populations"], check_exact=True)

    def tables(text, *titles):
        return [text.split(f"## {t}")[1].split("\n## ")[0] for t in titles]

    assert tables(texts["cells"], "Best learning rate", "Final performance", "Diverged runs") == \
        tables(texts["populations"], "Best learning rate", "Final performance", "Diverged runs")


def test_plans_respect_the_size_and_the_budget():
    from optbench.suite.studies.runner import plan_populations
    from optbench.suite.studies.spec import Cell, cell_key

    cells = []
    for bs in (32, 3000):
        for i in range(10):
            c = RunConfig.of(dataset="mnist1d", hidden=(128, 128), batch_size=bs if bs != 3000 else "full",
                          optimizer="adam", lr=1e-3 * (i + 1), backend="numpy")
            cells.append(Cell(c, cell_key(c)))
    shapes = {"mnist1d": (40, 10, 3000)}
    plan = plan_populations(cells, shapes)
    by_batch = {}
    for pop in plan:
        assert len({population_key(c.config) for c in pop}) == 1
        by_batch.setdefault(pop[0].config.batch_size, []).append(len(pop))
    assert by_batch[32] == [10] and max(by_batch["full"]) < 10  # the CPU's cache budget splits full batches
    assert [len(p) for p in plan_populations(cells[:10], shapes, size=4)] == [4, 4, 2]
    assert [len(p) for p in plan_populations(cells[:10], shapes, budget=1)] == [1] * 10
