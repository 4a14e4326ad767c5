"""The GPU path, run in CI on the CuPy stand-in (optbench.kernels.testing): the
training loop, a study, validate and bench on backend cupy give what NumPy
gives, and an epoch reads nothing back to the host while it trains.

On the lent GPU machine the same tests run on the real CuPy (the ``cp``
fixture), where the counters do not exist; the counting tests then skip.
"""

import numpy as np
import pandas as pd
import pytest

from optbench.suite.cli import main
from optbench.suite.training.config import RunConfig
from optbench.suite.training.loop import run, without_timing

SMALL = dict(dataset="digits", hidden=(32,), epochs=3, batch_size=64, seed=1)


def _records(config):
    return without_timing(run(config))


def _same(a, b, rtol=1e-5):
    """Records equal but for backend and device, floats within rtol."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for key in ra:
            if key in ("backend", "device"):
                continue
            va, vb = ra[key], rb[key]
            if isinstance(va, float) and not (np.isnan(va) and np.isnan(vb)):
                assert vb == pytest.approx(va, rel=rtol, abs=1e-7), key
            elif not (isinstance(va, float) and np.isnan(va)):
                assert va == vb, key


@pytest.mark.gpu
@pytest.mark.parametrize("change", [{}, {"optimizer": "nesterov", "lr": 0.05, "wd": 0.01},
                                    {"dropout": 0.3}, {"dropout": 0.2, "dropout_mode": "classic",
                                                       "activation": "prelu"},
                                    {"layer_norms": True, "optimizer": "rmsprop"}])
def test_a_run_on_cupy_gives_the_numpy_records(cp, change):
    """Same config and seed: the same records within float32 rounding. With
    dropout too, since the Philox masks are bit-identical on both."""
    numpy = _records(RunConfig.of(**SMALL, **change, backend="numpy"))
    cupy = _records(RunConfig.of(**SMALL, **change, backend="cupy"))
    assert cupy[-1]["backend"] == "cupy"
    _same(numpy, cupy)


@pytest.mark.gpu
def test_a_diverging_run_on_cupy_stops_where_numpy_stops(cp):
    """The device freezes the run at its first non-finite step (no read
    back); the records -- diverged, the step count, the weights evaluated --
    are NumPy's, which stops the loop right there."""
    config = dict(SMALL, optimizer="sgd", lr=1e6, epochs=4)
    numpy = _records(RunConfig.of(**config, backend="numpy"))
    cupy = _records(RunConfig.of(**config, backend="cupy"))
    assert numpy[-1]["diverged"] and numpy[-1]["stop_reason"] == "diverged"
    _same(numpy, cupy)


def test_an_epoch_reads_nothing_back_while_it_trains(standin):
    """Host syncs per epoch are a small constant, whatever the number of steps
    (batch 16: 68 steps an epoch; batch 512: 3)."""
    per_epoch = {}
    for batch in (16, 512):
        standin.reset_counts()
        run(RunConfig.of(**{**SMALL, "batch_size": batch, "epochs": 1}, backend="cupy"))
        one = standin.counts()["syncs"]
        standin.reset_counts()
        run(RunConfig.of(**{**SMALL, "batch_size": batch, "epochs": 3}, backend="cupy"))
        per_epoch[batch] = (standin.counts()["syncs"] - one) / 2
    assert per_epoch[16] == per_epoch[512] <= 10, per_epoch


def test_the_training_loop_alone_syncs_once_per_epoch(standin):
    """train_epoch: one read of the step account at the end, one upload of the
    epoch's order; launches grow with the steps, syncs do not."""
    from optbench.suite.bench.launches import count

    rows = count((32, 256), log=lambda *a: None)
    for r in rows:
        assert r["syncs_per_epoch"] == 1 and r["h2d_per_epoch"] == 1 and r["eval_syncs"] == 1
        assert 20 < r["launches_per_step"] < 60


@pytest.mark.gpu
def test_a_small_study_on_cupy_matches_numpy(cp, tmp_path):
    from optbench.suite.studies.runner import run_study
    from optbench.suite.studies.spec import load_study
    from optbench.suite.studies.store import load_results

    frames = {}
    for backend in ("numpy", "cupy"):
        out = tmp_path / backend
        run_study(load_study("smoke", backend=backend), out, backend, quiet=True)
        df = load_results(out).drop(columns=["cell", "backend", "device", "wall_time", "examples_per_sec"])
        frames[backend] = df.sort_values(["optimizer", "batch_size", "seed", "epoch"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(frames["numpy"], frames["cupy"], rtol=1e-5, check_dtype=False)


@pytest.mark.gpu
def test_validate_on_cupy_passes(cp, capsys):
    assert main(["validate", "--backend", "cupy"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed on cupy" in out and "FAIL" not in out


@pytest.mark.gpu
def test_bench_on_cupy_runs(cp, tmp_path, capsys):
    """Timings on the stand-in mean nothing; every section must run (with an
    element-wise rule and one that reduces per tensor: the stand-in runs each
    kernel's CUDA source on the host, and the quick GPU sizes reach 2^26
    parameters, where all 21 rules -- Muon's Newton-Schulz on a 3488 x 5232
    matrix above all -- would take many minutes on the CPU)."""
    assert main(["bench", "--backend", "cupy", "--quick", "--repeats", "1", "--no-torch", "--members", "1,4",
                 "--only", "adam,lamb", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "throughput.csv")
    assert set(df.section) == {"copy", "rule", "dropout", "model", "training", "population"}
    assert set(df[df.section == "rule"].impl) == {"cupy"}
    assert set(df[df.section == "rule"].rule) >= {"adam", "lamb"}
    assert (tmp_path / "report.md").is_file()


def test_bench_launches_prints_the_budget(capsys):
    assert main(["bench", "--launches", "--batch-sizes", "64"]) == 0
    out = capsys.readouterr().out
    assert "launches/step" in out and "\n    64 " in out


def test_auto_on_a_machine_without_a_gpu_trains_with_numba():
    """auto picks the fastest CPU kernels, and every row says so."""
    records = run(RunConfig.of(**{**SMALL, "epochs": 1}, backend="auto"))
    assert {r["backend"] for r in records} == {"numba"}


@pytest.mark.gpu
def test_a_checkpoint_made_on_cupy_loads_on_numpy(cp, tmp_path):
    """Saving reads the device buffers back explicitly; the file is the same
    whichever device wrote it."""
    path = tmp_path / "c.npz"
    on_gpu = run(RunConfig.of(**SMALL, backend="cupy", checkpoint=str(path)))
    again = run(RunConfig.of(**{**SMALL, "epochs": 1}, backend="numpy", init="checkpoint", init_from=str(path)))
    assert again[0]["train_loss"] == pytest.approx(on_gpu[-1]["train_loss"], rel=1e-5)


def test_an_epoch_allocates_the_same_whatever_its_number_of_steps():
    """Issue 22: every allocation of an epoch is made once per epoch (its
    step account, its scalar table); a step makes none after the first at
    its batch size, so 94 steps allocate what 1 step does."""
    from optbench.suite.bench.launches import count

    many, one = count((32, 3000), log=lambda *_: None)
    assert many["steps"] == 94 and one["steps"] == 1
    assert many["allocs_per_epoch"] == one["allocs_per_epoch"] <= 10


@pytest.mark.gpu
@pytest.mark.parametrize("change", [{}, {"optimizer": "nesterov", "lr": 0.05, "wd": 0.01, "activation": "tanh"},
                                    {"optimizer": "sgd", "lr": 5.0, "epochs": 5},
                                    {"activation": "sigmoid", "batch_size": "full", "loss": "squared"},
                                    {"state": "bf16"}, {"state": "int8"}])
def test_epochs_replayed_as_a_cuda_graph_give_the_launched_epochs_records_exactly(cp, change, monkeypatch):
    """Issue 22: from the second epoch on a population's epoch is one graph
    launch; the records are those of launching every step, bit for bit --
    a run that diverges in its third epoch included: the device's flags stop
    it inside the replayed graph."""
    config = RunConfig.of(**{**SMALL, **change}, backend="cupy")
    graphed = pd.DataFrame(_records(config))
    monkeypatch.setenv("OPTBENCH_NO_GRAPH", "1")
    launched = pd.DataFrame(_records(config))
    assert graphed.equals(launched)
    if change.get("lr") == 5.0:
        assert graphed["diverged"].iloc[-1] and len(graphed) == 4  # stopped in epoch 3, a replay
    else:
        assert len(graphed) == config.workload.epochs + 1


def test_a_replayed_epoch_is_one_graph_launch_plus_its_upload_and_its_read(standin):
    from optbench.kernels import PopulationOptimizer
    from optbench.suite.nn.mlp import MLP
    from optbench.suite.training.epoch import CapturedEpochs, batch_bounds

    cp, rng = standin, np.random.default_rng(0)
    P, n = 4, 300
    X, y = cp.asarray(rng.standard_normal((1, n, 10)).astype(np.float32)), cp.asarray(rng.integers(0, 3, (1, n)))
    model = MLP([10, 16, 3], "relu", "cross_entropy", xp=cp, members=P)
    model.params[...] = cp.asarray(rng.standard_normal(model.params.shape).astype(np.float32) * 0.1)
    opt = PopulationOptimizer(model.params, ["adam"] * P, [{}] * P, layout=model.layout)
    epochs = CapturedEpochs(model, opt, X, y, cp.zeros(P, dtype=np.int64), batch_bounds(n, 32), cp.ones(P, np.int32))
    orders = lambda e: np.stack([np.random.default_rng([e, m]).permutation(n) for m in range(P)])
    epochs.run(orders(0))  # launched: buffers made, kernels built
    epochs.run(orders(1))  # captured, then launched
    standin.reset_counts()
    epochs.run(orders(2))
    counts = standin.counts()
    assert counts["graph_nodes"] == epochs.graph.nodes > 10 * 30  # ten steps of tens of operations each
    # the graph and the epoch's one upload (order and scalar table), then its one read; nothing allocated
    assert counts["launches"] == 1 + 1 and counts["h2d"] == 1 and counts["syncs"] == 1 and counts["allocs"] == 0


def test_a_population_that_cannot_be_captured_is_launched_and_says_why_once(standin, capsys, monkeypatch):
    from optbench.suite.training import epoch

    monkeypatch.setattr(epoch, "_SAID", set())
    for _ in range(2):
        run(RunConfig.of(**{**SMALL, "epochs": 2, "dropout": 0.2}, backend="cupy"))
    said = capsys.readouterr().err
    assert said.count("optbench: training without CUDA graphs: dropout") == 1
    monkeypatch.setenv(epoch.NO_GRAPH, "1")
    run(RunConfig.of(**{**SMALL, "epochs": 2}, backend="cupy"))
    assert "without CUDA graphs: --no-graph" in capsys.readouterr().err


def test_a_capture_the_device_refuses_falls_back_to_launched_epochs(standin, capsys, monkeypatch):
    """A step that cannot be captured (here: one that allocates) leaves no
    trace on the device or in the optimiser's step count; the epochs are
    launched instead, with the same records, and training says why once."""
    from optbench.suite.training import epoch

    config = RunConfig.of(**{**SMALL, "epochs": 4}, backend="cupy")
    monkeypatch.setenv(epoch.NO_GRAPH, "1")
    launched = pd.DataFrame(_records(config))
    monkeypatch.delenv(epoch.NO_GRAPH)
    monkeypatch.setattr(epoch, "_SAID", set())
    step = epoch.training_step

    def allocating_step(model, *args):
        model.xp.zeros(1)  # an allocation: refused inside a capture
        step(model, *args)

    monkeypatch.setattr(epoch, "training_step", allocating_step)
    fell_back = pd.DataFrame(_records(config))
    assert fell_back.equals(launched)
    assert capsys.readouterr().err.count("the device refused the capture (CaptureError") == 1


@pytest.mark.gpu
@pytest.mark.parametrize("state", ["bf16", "bf16-sr", "int8"])
def test_a_run_with_low_precision_state_on_cupy_gives_the_numpy_records(cp, state):
    """Issue 23: the state rounded on the device with the same bits as on the host."""
    numpy = _records(RunConfig.of(**SMALL, state=state, backend="numpy"))
    cupy = _records(RunConfig.of(**SMALL, state=state, backend="cupy"))
    _same(numpy, cupy)
