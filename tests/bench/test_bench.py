"""optbench bench and its throughput report: the machinery, never timed assertions.

Runs the benchmark at toy sizes with one sample (seconds, not minutes), checks
the timing harness on a fake clock, the PyTorch mapping where PyTorch is
installed, the acceptance scoring on hand-made tables, and that
``optbench report`` regenerates a throughput report from its stored table.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from optbench.kernels import RULES, Optimizer
from optbench.suite.bench import cases as bench_cases
from optbench.suite.bench import command as bench
from optbench.suite.bench import timing as bench_timing
from optbench.suite.bench import training as bench_training
from optbench.suite.bench import report as tr
from optbench.suite.bench import scoring as tscore
from optbench.suite.cli import main


# --- the timing harness ---------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.log = []

    def timer(self):
        clock = self

        class T:
            seconds = float("nan")

            def __enter__(self):
                self.t0 = clock.now
                return self

            def __exit__(self, *exc):
                self.seconds = clock.now - self.t0

        return T()


def _fake_case(clock, name, cost, copies=1):
    calls = [0] * copies

    def make(k):
        def fn():
            calls[k] += 1
            clock.now += cost
            clock.log.append(name)
        return fn

    case = bench_timing.Case(name, [make(k) for k in range(copies)], clock.timer, lambda: None, copies=copies)
    return case, calls


def test_measure_takes_the_median_of_interleaved_samples():
    clock = FakeClock()
    a, a_calls = _fake_case(clock, "a", 1e-3, copies=3)
    b, _ = _fake_case(clock, "b", 5e-3)
    bench_timing.measure([a, b], repeats=4, min_sample_s=2.5e-3)
    assert a.seconds == pytest.approx(1e-3) and b.seconds == pytest.approx(5e-3)
    assert a.calls == 3 and b.calls == 1  # enough calls to last min_sample_s
    assert len(a.samples) == len(b.samples) == 4
    assert min(a_calls) >= 2  # the rotation reaches every copy
    timed = clock.log[-(4 * 3 + 4):]  # the samples, after warm-up and sizing
    firsts = [timed[0], timed[4]]  # round 0 starts with a, round 1 with b
    assert firsts == ["a", "b"]


class _FakeBackend:
    def __init__(self, gpu):
        self.is_gpu, self.name, self.device = gpu, "cupy" if gpu else "numpy", "fake"


def test_gpu_cases_rotate_past_twice_the_l2_cache():
    env = bench_timing.Env([_FakeBackend(True)], quick=True, repeats=1, l2_bytes=50 << 20)
    assert env.copies(1 << 30) == (1, True)            # one set is 20x the L2: cold already
    copies, cold = env.copies(10 << 20)
    assert cold and (copies - 1) * (10 << 20) >= 2 * (50 << 20)
    copies, cold = env.copies(16 << 10)                # 16 KB sets: capped, stay in L2
    assert copies == bench_timing.ROTATION_CAP and cold is False
    cpu = bench_timing.Env([_FakeBackend(False)], quick=True, repeats=1)
    assert cpu.copies(1 << 30) == (1, None)


def test_sanitize_and_sections():
    assert bench.sanitize("NVIDIA H100 80GB HBM3") == "NVIDIA-H100-80GB-HBM3"
    assert bench.sanitize("AMD EPYC x2") == "AMD-EPYC-x2"
    ns = bench.BenchOptions
    assert bench.wanted_sections(ns()) == ["rules", "models", "training", "population"]
    assert bench.wanted_sections(ns(sizes=[1024], training=True)) == ["rules", "training"]
    meta = {"device_dir": "AMD-EPYC-x2"}
    assert str(bench.default_out(ns(), meta)) == "results/throughput/AMD-EPYC-x2"
    assert bench.default_out(ns(quick=True), meta) is None    # quick runs are kept only with --out
    assert bench.default_out(ns(sizes=[1024]), meta) is None
    assert str(bench.default_out(ns(quick=True, out="x"), meta)) == "x"


def test_kernel_backends_side_by_side():
    assert [b.name for b in bench_timing.kernel_backends("numpy")] == ["numpy"]
    try:
        names = [b.name for b in bench_timing.kernel_backends("numba")]
    except Exception as exc:  # BackendUnavailable without numba
        assert "needs Numba" in str(exc)
    else:
        assert names == ["numba", "numpy"]
        assert [b.name for b in bench_timing.kernel_backends("auto")] == ["numba", "numpy"]  # no GPU here


# --- PyTorch mapping ------------------------------------------------------------------------

def test_every_rule_torch_has_maps_to_a_torch_optimiser():
    torch = pytest.importorskip("torch")
    from optbench.kernels.rules import BUILTIN

    mapped = [name for name in BUILTIN if bench_cases.torch_rule_note(name)]
    assert mapped, "no rule has a torch.optim peer"
    for name in set(BUILTIN) - set(mapped):  # not in torch.optim: the rule says so, or names its library
        peer = RULES[name].peer
        assert "torch" in RULES[name].peer_note or (peer and peer.library in RULES[name].peer_note), name
    for name in mapped:
        p = torch.nn.Parameter(torch.ones(8))
        p.grad = torch.ones(8)
        opt = bench_cases.torch_optimizer(torch, name, [p], "torch-foreach")
        opt.step()
        assert not torch.equal(p.detach(), torch.ones(8)), name
    with pytest.raises(KeyError, match="lion"):
        bench_cases.torch_optimizer(torch, "lion", [p], "torch-foreach")


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam", "amsgrad"])
def test_the_benchs_torch_optimiser_is_our_rule(name):
    """The bench times torch's exact equivalent (e.g. momentum: SGD with
    lr (1 - gamma), dampening 0): the same parameters after a few steps."""
    torch = pytest.importorskip("torch")
    w0 = np.linspace(-1, 1, 16, dtype=np.float32)
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = bench_cases.torch_optimizer(torch, name, [p], "torch-foreach")
    ours = Optimizer(name, w0.copy(), backend="numpy")
    for k in range(5):
        g = np.cos(np.arange(16, dtype=np.float32) * (k + 1)).astype(np.float32)
        p.grad = torch.from_numpy(g.copy())
        opt.step()
        ours.step(g)
    np.testing.assert_allclose(p.detach().numpy(), ours.params, rtol=1e-5, atol=1e-6)


# --- sections at toy sizes ------------------------------------------------------------------

def test_size_rows_count_bytes_per_param_against_a_copy_timed_alongside():
    env = bench_timing.make_env("numpy", quick=True, repeats=1, use_torch=False)
    rows = bench_cases.size_rows(env, 1024, rules=["sgd", "adam"], naive=True)
    assert [(r["section"], r["rule"], r["impl"]) for r in rows] == [
        ("copy", "copy", "numpy"), ("rule", "sgd", "numpy"), ("rule", "adam", "numpy"),
        ("rule", "adam (naive numpy)", "numpy-naive"),
        ("dropout", "dropout-forward", "numpy"), ("dropout", "dropout-backward", "numpy")]
    copy = rows[0]
    assert copy["copy_fraction"] == pytest.approx(1.0) and copy["repeats"] == 4  # pooled: 4 groups
    for r in rows[1:3]:
        bpp = RULES[r["rule"]].bytes_per_param
        assert r["bytes_per_param"] == bpp
        assert r["gbps"] == pytest.approx(bpp * 1024 / r["seconds"] / 1e9)
        assert r["copy_fraction"] == pytest.approx(r["gbps"] / r["copy_gbps"])
        assert math.isnan(r["ratio_torch"])
    assert all(r["bytes_per_param"] == 8 for r in rows[4:])


def test_each_state_precision_is_timed_in_the_rule_s_group_with_its_own_bytes(tmp_path):
    """Issue 23: ``--state fp32,bf16,int8``: one row per precision, impl
    "numpy bf16", bytes per parameter from the layout (Adam's bf16 state: 20,
    int8 held in float32 words: 28), the speed-up against float32 in the
    report's State precision section and an acceptance row; PyTorch is
    compared with the float32 rows alone."""
    env = bench_timing.make_env("numpy", quick=True, repeats=1, use_torch=False)
    rows = bench_cases.rule_rows(env, 1024, ["adam"], states=("fp32", "bf16", "int8"))
    got = {(r["impl"], r["state"]): r["bytes_per_param"] for r in rows}
    assert got == {("numpy", "fp32"): 28, ("numpy bf16", "bf16"): 20, ("numpy int8", "int8"): 28}
    df = pd.DataFrame(rows, columns=bench_cases.COLUMNS)
    sp = tscore.state_speedups(df).set_index("state")
    fp32 = df[df.state == "fp32"].seconds.iloc[0]
    assert sp.loc["bf16", "speedup"] == pytest.approx(fp32 / df[df.state == "bf16"].seconds.iloc[0])
    assert sp.loc["bf16", "byte_ratio"] == pytest.approx(1.4) and sp.loc["int8", "byte_ratio"] == 1
    assert set(tscore.best_vs_torch(df).ours_impl) == {"numpy"}
    section = "\n".join(tr.state_section(df))
    assert "## State precision" in section and "| adam | 2^10 | numpy | bf16 | 20 | 1.40x |" in section


def test_the_state_acceptance_row_and_tables_from_before_the_state_column():
    n = 1 << 24
    df = _frame([
        {"section": "rule", "rule": "adam", "size": n, "impl": "numba", "seconds": 10.0, "bytes_per_param": 28,
         "state": "fp32"},
        {"section": "rule", "rule": "adam", "size": n, "impl": "numba bf16", "seconds": 8.0, "bytes_per_param": 20,
         "state": "bf16"},
        {"section": "rule", "rule": "adam", "size": n, "impl": "torch-foreach", "seconds": 9.0},
    ])
    acc = {a["criterion"]: a for a in tscore.acceptance(df, {"gpu": False})}
    row = acc["CPU adam at 2^24 (numba): bf16 state against fp32, timed together"]
    assert row["measured"] == "1.25x (bytes 1.40x)" and row["ok"] is False
    assert acc["CPU adam at 2^24: best of ours (numba) vs PyTorch's best (torch-foreach)"]["measured"] == "0.90x"
    old = _frame([{"section": "rule", "rule": "adam", "size": n, "impl": "numba", "seconds": 10.0}]).drop(
        columns="state")
    assert tscore.state_speedups(old).empty and tscore.best_vs_torch(old).ours_impl.tolist() == ["numba"]


@pytest.mark.parametrize("text, want", [("bf16", ("fp32", "bf16")), ("int8,fp32,bf16-sr", ("fp32", "int8", "bf16-sr"))])
def test_bench_state_flag_puts_float32_first(text, want):
    from optbench.suite.cli import parse_states

    assert parse_states(text) == want


def test_an_unknown_state_precision_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--sizes", "2^10", "--state", "fp32,fp16"])
    assert exc.value.code == 2 and "unknown state precision 'fp16'" in capsys.readouterr().err


def test_torch_ratios_are_relative_to_the_best_torch_row():
    rows = [{"impl": "numba", "seconds": 2.0}, {"impl": "torch-foreach", "seconds": 8.0},
            {"impl": "torch-fused", "seconds": 4.0}]
    bench_cases.set_torch_ratios(rows)
    assert [r["ratio_torch"] for r in rows] == [2.0, 0.5, 1.0]


def test_model_and_training_sections_run():
    env = bench_timing.make_env("numpy", quick=True, repeats=1)
    rows = bench_cases.model_rows(env, models=["mnist1d"], rules=["adam"], log=print)
    ours = [r for r in rows if r["impl"] == "numpy" and r["rule"] == "adam"]
    assert ours and ours[0]["size"] == 23050 and ours[0]["n_tensors"] == 6
    assert any(r["rule"] == "copy" for r in rows)
    if env.torch is not None:
        assert {"torch-foreach", "torch-fused"} <= {r["impl"] for r in rows}
    env.torch = None  # PyTorch's training steps are the same code path as above; keep this quick
    train = bench_training.training_rows(env, batch_sizes=[32], datasets=["digits"], log=print)
    assert train and all(r["examples_per_sec"] > 0 and r["batch"] == 32 for r in train)
    assert train[0]["note"].startswith("MLP 64-128-128-10")


# --- acceptance scoring ------------------------------------------------------------------------

def _frame(rows):
    return pd.DataFrame([{c: np.nan for c in bench_cases.COLUMNS} | r for r in rows])


def test_cpu_acceptance_compares_best_of_ours_with_best_of_torch():
    n = 1 << 24
    df = _frame([
        {"section": "rule", "rule": "adam", "size": n, "impl": "numpy", "seconds": 10.0},
        {"section": "rule", "rule": "adam", "size": n, "impl": "numba", "seconds": 5.0},
        {"section": "rule", "rule": "adam", "size": n, "impl": "torch-foreach", "seconds": 20.0},
        {"section": "rule", "rule": "adam", "size": n, "impl": "torch-fused", "seconds": 6.0},
        {"section": "rule", "rule": "sgd", "size": n, "impl": "numba", "seconds": 10.0},
        {"section": "rule", "rule": "sgd", "size": n, "impl": "torch-foreach", "seconds": 8.0},
        {"section": "rule", "rule": "sgd", "size": 1024, "impl": "numba", "seconds": 1.0},
    ])
    acc = tscore.acceptance(df, {"gpu": False, "quick": True, "wall_seconds": 200.0})
    by = {a["criterion"].split(":")[0]: a for a in acc}
    assert by["CPU adam at 2^24"]["measured"] == "1.20x" and by["CPU adam at 2^24"]["ok"] is True
    assert "numba" in acc[1]["criterion"] or "numba" in acc[0]["criterion"]
    assert by["CPU sgd at 2^24"]["ok"] is False
    assert by["quick benchmark wall time"]["ok"] is False  # 200 s > 180 s


def test_gpu_acceptance():
    n = 1 << 26
    df = _frame([
        {"section": "rule", "rule": "adam", "size": n, "impl": "cupy", "seconds": 1.0, "copy_fraction": 0.9},
        {"section": "rule", "rule": "adam", "size": n, "impl": "torch-fused", "seconds": 0.9},
        {"section": "model", "rule": "adam", "model": "deep", "n_tensors": 50, "size": 10, "impl": "cupy",
         "seconds": 1.0},
        {"section": "model", "rule": "adam", "model": "deep", "n_tensors": 50, "size": 10,
         "impl": "torch-fused", "seconds": 3.0},
    ])
    acc = {a["criterion"]: a for a in tscore.acceptance(df, {"gpu": True})}
    assert [a["ok"] for a in acc.values()] == [True, False, True]
    assert acc["GPU adam at 2^26: vs PyTorch's fused Adam"]["measured"] == "0.90x"


# --- end to end: bench --out, then optbench report --------------------------------------------

def test_bench_writes_table_and_report_regenerates(tmp_path, capsys):
    out = tmp_path / "tp"
    assert main(["bench", "--backend", "numpy", "--sizes", "1024", "--repeats", "1", "--no-torch",
                 "--note", "a test machine", "--out", str(out)]) == 0
    df = pd.read_csv(out / "throughput.csv")
    assert list(df.columns) == bench_cases.COLUMNS
    assert set(df.section) == {"copy", "rule", "dropout"}
    assert set(df[df.section == "rule"].rule) == set(RULES)
    # Muon's row gives its Newton-Schulz rate beside matmul's (its hidden 16 x 24 matrix)
    note = df[(df.section == "rule") & (df.rule == "muon")].note.iloc[0]
    assert "Newton-Schulz on 16x24:" in note and "of a general matmul's" in note
    meta = json.loads((out / "meta.json").read_text())
    assert meta["backends"] == ["numpy"] and meta["note"] == "a test machine" and meta["sizes"] == [1024]
    assert (out / "report.md").is_file() and (out / "figures" / "bandwidth.png").is_file()

    # Add the sections a toy run skipped (PyTorch, models, training) by hand,
    # then regenerate from the table alone.
    extra = _frame([
        {"section": "rule", "rule": "adam", "size": 1024, "impl": "torch-fused", "seconds": 1e-3,
         "gbps": 0.03, "note": "Adam(betas=(gamma, alpha), eps)"},
        {"section": "model", "rule": "adam", "model": "mnist1d", "n_tensors": 6, "size": 23050,
         "impl": "numpy", "seconds": 2e-5, "gbps": 30.0},
        {"section": "model", "rule": "adam", "model": "mnist1d", "n_tensors": 6, "size": 23050,
         "impl": "torch-fused", "seconds": 6e-5, "gbps": 10.0},
        {"section": "training", "rule": "adam", "model": "digits", "batch": 64, "impl": "numpy",
         "seconds": 1e-4, "examples_per_sec": 640000.0, "note": "MLP 64-128-128-10, ReLU"},
        {"section": "training", "rule": "adam", "model": "digits", "batch": 64, "impl": "torch",
         "seconds": 3e-4, "examples_per_sec": 213333.0, "note": "MLP 64-128-128-10, ReLU"},
    ])
    pd.concat([df, extra]).to_csv(out / "throughput.csv", index=False)
    (out / "report.md").unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "report.md" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    for needle in ("# Throughput on", "a test machine", "## Update rules at 2^10", "## Model-shaped updates",
                   "## Training throughput", "3.00x", "## Method"):
        assert needle in text, needle
    for fig in ("bandwidth", "ratio_torch", "models", "training"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000, fig


def test_report_writes_the_report_of_the_kind_the_folder_declares(tmp_path, monkeypatch, capsys):
    import optbench.suite.studies.report
    from optbench.suite.reporting.kinds import write_kind

    monkeypatch.setattr(optbench.suite.studies.report, "write_report", lambda d: d / "study-report.md")
    write_kind(tmp_path, "study")
    assert main(["report", str(tmp_path)]) == 0
    assert "study-report.md" in capsys.readouterr().out
    (tmp_path / "throughput.csv").write_text("")  # a file of another kind's does not change what it is
    assert main(["report", str(tmp_path)]) == 0
    assert "study-report.md" in capsys.readouterr().out
    (tmp_path / "optbench.json").unlink()
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no results" in capsys.readouterr().err


def test_report_without_a_table_is_a_clear_error(tmp_path):
    with pytest.raises(tscore.ThroughputReportError, match="no throughput.csv"):
        tr.write_throughput_report(tmp_path)
