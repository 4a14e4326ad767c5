"""Bad input, as a new user would give it: one clear line, a non-zero exit,
no traceback, and nothing already stored is changed.

One table drives the command-line cases: the arguments (study files are
written from the ``study`` text), the fragment the one-line message must
hold, and the exit code (2: bad input). Every case runs against a results
folder holding a finished study; its files must be byte-for-byte the same
afterwards. The cases the table cannot express (a read-only folder, a full
disk, two runs at once, a damaged cell, a damaged data cache, Ctrl-C) follow.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tqdm")  # the lent GPU machine runs only the gpu-marked tests

from optbench.suite.cli import main  # noqa: E402
from optbench.suite.studies import runner, store  # noqa: E402
from optbench.suite.studies.spec import load_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = """
[study]
name = "tiny"
[fixed]
dataset = "digits"
hidden = [8]
epochs = 1
[grid]
optimizer = ["sgd", "adam"]
"""


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A results folder with a finished study and its report."""
    root = tmp_path_factory.mktemp("stored")
    path = root / "tiny.toml"
    path.write_text(TINY)
    out = root / "results"
    assert main(["run", str(path), "--backend", "numpy", "--out", str(out), "--quiet"]) == 0
    return out


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".claims"}


def cli(argv) -> int:
    """main(argv)'s exit code, whether it returns or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def study(body: str) -> str:
    """A study file's text: the tiny study with ``body`` appended to [fixed]."""
    head, _, grid = TINY.partition("[grid]")
    return head + body + "\n[grid]" + grid


# (id, args, study text or None, message fragment, exit code). "{study}" in the
# args is the written study file, "{out}" the stored results folder, "{tmp}" a
# fresh folder.
CASES = [
    ("missing study file", ["run", "{tmp}/nope.toml"], None, "does not exist", 2),
    ("unknown built-in study", ["run", "no-such-study"], None, "unknown study 'no-such-study'", 2),
    ("not TOML", ["run", "{study}"], "[fixed\nepochs = 1", "not valid TOML", 2),
    ("unknown table", ["run", "{study}"], TINY + "[tuning]\nx = 1\n", "unknown table [tuning]", 2),
    ("unknown key", ["run", "{study}"], study("learning_rate = 0.1"), "unknown key 'learning_rate'", 2),
    ("unknown optimiser", ["run", "{study}"], TINY.replace('"adam"]', '"adamw"]'), "unknown optimiser 'adamw'", 2),
    ("negative lr", ["run", "{study}"], study("lr = -1"), "'lr' of rule 'sgd' must be finite and in (0, inf)", 2),
    ("nan lr", ["run", "{study}"], study("lr = nan"), "must be finite", 2),
    ("infinite lr", ["run", "{study}"], study("lr = inf"), "must be finite", 2),
    ("adam gamma 1", ["run", "{study}"], TINY.replace('["sgd", "adam"]', '["adam"]')
     .replace("epochs = 1", "epochs = 1\nhyper = {gamma = 1.0}"), "'gamma' of rule 'adam' must be finite and in [0, 1)", 2),
    ("adam alpha 1", ["run", "{study}"], TINY.replace('["sgd", "adam"]', '["adam"]')
     .replace("epochs = 1", "epochs = 1\nhyper = {alpha = 1.0}"), "'alpha' of rule 'adam'", 2),
    ("unknown hyper-parameter", ["run", "{study}"], study("hyper = {gamma = 0.9}"),
     "rule 'sgd' has no hyper-parameter 'gamma'", 2),
    ("momentum gamma 1", ["run", "{study}"], TINY.replace('["sgd", "adam"]', '["momentum"]')
     .replace("epochs = 1", "epochs = 1\nhyper = {gamma = 1.0}"), "'gamma' of rule 'momentum'", 2),
    ("zero eps", ["run", "{study}"], TINY.replace('["sgd", "adam"]', '["rmsprop"]')
     .replace("epochs = 1", "epochs = 1\nhyper = {eps = 0.0}"), "'eps' of rule 'rmsprop' must be finite and in (0, inf)", 2),
    ("negative decay", ["run", "{study}"], study("wd = -0.1"), "'wd' of rule 'sgd' must be finite and in [0, inf)", 2),
    ("unknown schedule kind", ["run", "{study}"], study('schedule = {kind = "cosin"}'),
     "schedule kind 'cosin' is not allowed; allowed: constant, step, exponential, cosine, warmup_cosine", 2),
    ("schedule without its kind", ["run", "{study}"], study("schedule = {warmup = 10}"), "has no 'kind'", 2),
    ("schedule missing a parameter", ["run", "{study}"], study('schedule = {kind = "warmup_cosine"}'),
     "schedule 'warmup_cosine' needs 'warmup'", 2),
    ("schedule parameter out of range", ["run", "{study}"], study('schedule = {kind = "exponential", gamma = 1.5}'),
     "schedule 'exponential': gamma must be a number in (0, 1], got 1.5", 2),
    ("schedule parameter of the wrong kind", ["run", "{study}"],
     study('schedule = {kind = "inverse_sqrt", warmup = "100"}'), "warmup must be a positive integer", 2),
    ("schedule with an unknown parameter", ["run", "{study}"], study('schedule = {kind = "cosine", warmup = 5}'),
     "schedule 'cosine' has no parameter 'warmup'; allowed: min_factor", 2),
    ("schedule that is not a table", ["run", "{study}"], study("schedule = 0.5"), "a schedule is a table", 2),
    ("bad schedule in a grid", ["run", "{study}"], TINY + 'schedule = [{kind = "cosine"}, {kind = "step", gamma = 0.5}]\n',
     "schedule 'step' needs 'step_size'", 2),
    ("warm-up as long as the run", ["run", "{study}"], study('schedule = {kind = "warmup_cosine", warmup = 17}'),
     "warmup = 17 must be less than the run's 17 steps", 2),
    ("unknown decay setting", ["run", "{study}"], study('decay = "biases"'),
     "decay = 'biases' is not allowed; allowed: all, weights", 2),
    ("string for a boolean", ["run", "{study}"], study('standardize = "false"'), "standardize must be true or false", 2),
    ("zero epochs", ["run", "{study}"], TINY.replace("epochs = 1", "epochs = 0"), "epochs must be a positive integer", 2),
    ("dropout 1", ["run", "{study}"], study("dropout = 1.0"), "dropout must be a probability in [0, 1)", 2),
    ("dropout below 0", ["run", "{study}"], study("dropout = -0.2"), "dropout must be a probability", 2),
    ("dropout per layer, wrong count", ["run", "{study}"], study("dropout = [0.1, 0.2]"), "dropout lists 2 rates", 2),
    ("zero width", ["run", "{study}"], TINY.replace("hidden = [8]", "hidden = [0]"), "hidden must be a list of positive", 2),
    ("negative seed", ["run", "{study}"], study("seed = -1"), "seed must be a non-negative integer", 2),
    ("batch larger than the data", ["run", "{study}"], study("batch_size = 5000"),
     "batch_size 5000 is larger than the training set of 'digits' (1079 objects)", 2),
    ("loss that does not fit the data", ["run", "{study}"], study('loss = "cross_entropy"').replace(
        'dataset = "digits"', 'dataset = "regression"'), "needs class labels", 2),
    ("missing checkpoint", ["run", "{study}"], study('init = "checkpoint"\ninit_from = "{tmp}/none.npz"'),
     "does not exist", 2),
    ("one checkpoint path for a grid", ["run", "{study}"], study('checkpoint = "{tmp}/c.npz"'),
     "would be written by 2 cells", 2),
    ("a name that is a path", ["run", "{study}"], TINY.replace('name = "tiny"', 'name = "../../escape"'),
     "is not a name", 2),
    ("an absolute name", ["run", "{study}"], TINY.replace('name = "tiny"', 'name = "/tmp/x"'), "is not a name", 2),
    ("workers below 1", ["run", "{study}", "--workers", "0"], TINY, "--workers: must be at least 1", 2),
    ("out is a file", ["run", "{study}", "--out", "{out}/metadata.json"], TINY, "is a file, not a folder", 2),
    ("cupy without cupy", ["run", "{study}", "--backend", "cupy"], TINY, "needs CuPy", 2),
    ("report of nothing", ["report", "{tmp}/nothing"], None, "does not exist", 2),
    ("report of an empty folder", ["report", "{tmp}"], None, "holds no results", 2),
    ("unknown command", ["train"], None, "invalid choice: 'train'", 2),
    ("bench size 0", ["bench", "--sizes", "0"], None, "size '0' must be at least 1", 2),
    ("bench repeats 0", ["bench", "--repeats", "0"], None, "--repeats: must be at least 1", 2),
    ("bench bad size", ["bench", "--sizes", "lots"], None, "bad size 'lots'", 2),
    ("validate, unknown backend", ["validate", "--backend", "tpu"], None, "invalid choice: 'tpu'", 2),
]


#: Plug-in rule files the round-three rows load (written beside the study file).
PLUGINS = {
    "decay_scalar.py": """
from optbench.kernels import Rule
RULE = Rule(name="decay_scalar", title="t", hyper={"lr": 0.1}, symbols={}, state=(), bytes_per_param=8,
            scalars=lambda hp, t: {"lr": hp["lr"], "decay": 0.5}, update="w = w - lr * decay * g")
""",
    "w_state.py": """
from optbench.kernels import Rule
RULE = Rule(name="w_state", title="t", hyper={"lr": 0.1}, symbols={}, state=("w",), bytes_per_param=8,
            scalars=lambda hp, t: {"lr": hp["lr"]}, update="w = w - lr * g")
""",
    "mask_state.py": """
from optbench.kernels import Rule
RULE = Rule(name="mask_state", title="t", hyper={"lr": 0.1}, symbols={}, state=("decay_mask",),
            bytes_per_param=8, scalars=lambda hp, t: {"lr": hp["lr"]},
            update="decay_mask = g\\nw = w - lr * decay_mask")
""",
    "exits.py": "import sys\nsys.exit(0)\n",
    "interrupts.py": "raise KeyboardInterrupt\n",
    # Fine at its default lr (the load-time trial), a division by zero at lr = 0.07.
    "divides.py": """
from optbench.kernels import Rule
RULE = Rule(name="divides", title="t", hyper={"lr": 0.1}, symbols={}, state=(), bytes_per_param=8,
            scalars=lambda hp, t: {"lr": hp["lr"], "k": 1.0 / (hp["lr"] - 0.07)}, update="w = w - lr * k * g")
""",
    "infinite.py": """
from optbench.kernels import Rule
RULE = Rule(name="infinite", title="t", hyper={"lr": 0.1}, symbols={}, state=(), bytes_per_param=8,
            scalars=lambda hp, t: {"lr": hp["lr"], "k": 1.0 if hp["lr"] != 0.07 else float("inf")},
            update="w = w - lr * k * g")
""",
}
# A plug-in name registers once per process: the cell-by-cell row loads its own copy.
PLUGINS["divides_alone.py"] = PLUGINS["divides.py"].replace('name="divides"', 'name="divides_alone"')


def plugin_study(rule: str, extra: str = "") -> str:
    """The tiny study training plug-in ``rule`` (from PLUGINS) at lr 0.07."""
    return (f'rules = ["{rule}.py"]\n' + TINY.replace('optimizer = ["sgd", "adam"]', f'optimizer = ["{rule}"]')
            .replace("epochs = 1", f"epochs = 1\nlr = 0.07\n{extra}"))


PROTOCOL = """
[study]
name = "p"
[protocol]
workloads = ["digits-mlp"]
optimizers = ["sgd"]
tuning_seeds = [0]
confirm_seeds = [1]
[fixed]
epochs = 1
"""

# Round three: the protocol, plug-ins and sizes (issue 21).
CASES += [
    ("plug-in scalar named as a transform's", ["rules", "--rules", "{dir}/decay_scalar.py"], None,
     "scalar 'decay' is a name the L2 and weight-decay transforms add", 2),
    ("plug-in state named w", ["validate", "--rules", "{dir}/w_state.py"], None, "'w' is declared twice", 2),
    ("plug-in state named decay_mask", ["run", "{study}"], plugin_study("mask_state", 'decay = "weights"'),
     "'decay_mask' is a name optbench gives a buffer of its own", 2),
    ("rules file calling sys.exit", ["validate", "--rules", "{dir}/exits.py"], None, "raised sys.exit(0)", 2),
    ("rules file raising KeyboardInterrupt", ["rules", "--rules", "{dir}/interrupts.py"], None,
     "raised KeyboardInterrupt while loading", 2),
    ("division by zero in a plug-in's scalars", ["run", "{study}"], plugin_study("divides"),
     "its scalars raised ZeroDivisionError at step t = 1 with lr = 0.07", 2),
    ("division by zero, cell by cell", ["run", "{study}", "--no-population"], plugin_study("divides_alone"),
     "its scalars raised ZeroDivisionError at step t = 1 with lr = 0.07", 2),
    ("non-finite scalar", ["run", "{study}"], plugin_study("infinite"), "its scalars gave k = inf", 2),
    ("too many runs", ["run", "{study}"], TINY + "seed = " + str(list(range(1000))) + "\nbatch_size = "
     + str(list(range(1, 52))) + "\n", "make 102,000 runs; the limit is 100,000", 2),
    ("too many steps", ["run", "{study}"], TINY.replace("epochs = 1", "epochs = 100000\nbatch_size = 1"),
     "optimiser steps; the limit is 10,000,000 per run", 2),
    ("too many parameters", ["run", "{study}"], TINY.replace("hidden = [8]", "hidden = [100000, 100000]"),
     "parameters; the limit is 268,435,456", 2),
    ("protocol: one checkpoint path", ["run", "{study}"], PROTOCOL + 'checkpoint = "{tmp}/c.npz"\n',
     "would be written by", 2),
    ("protocol: a million points a decade", ["run", "{study}"],
     PROTOCOL.replace("confirm_seeds = [1]", "confirm_seeds = [1]\nper_decade = 1000000"),
     "per_decade = 1000000; allowed: 1 to 5", 2),
    ("protocol: a billion trials", ["run", "{study}"],
     PROTOCOL.replace("confirm_seeds = [1]", 'confirm_seeds = [1]\nsearch = "random"\ntrials = 1000000000'),
     "trials = 1000000000; allowed: 2 to 10000", 2),
    ("protocol: too many runs", ["run", "{study}"],
     PROTOCOL.replace("tuning_seeds = [0]", "tuning_seeds = " + str(list(range(2, 20002)))),
     "make 100,005 runs; the limit is 100,000", 2),
    ("protocol: [space] key no optimiser has", ["run", "{study}"],
     PROTOCOL.replace("confirm_seeds = [1]", 'confirm_seeds = [1]\nsearch = "random"\ntrials = 2')
     + "[space]\nbeta2 = [0.9, 0.999]\n", "'beta2' is not a hyper-parameter of any", 2),
    ("protocol: unknown key in [fixed]", ["run", "{study}"], PROTOCOL + "learning_rate = 0.1\n",
     "unknown key 'learning_rate'", 2),
    ("protocol: a seed past 2^63", ["run", "{study}"], PROTOCOL.replace("confirm_seeds = [1]",
     "confirm_seeds = [9223372036854775807, 1]").replace("tuning_seeds = [0]", "tuning_seeds = [-1]"),
     "tuning_seeds must be distinct integers from 0 to 2^63 - 1", 2),
    ("protocol: an optimiser twice", ["run", "{study}"], PROTOCOL.replace('["sgd"]', '["sgd", "sgd"]'),
     "optimizers must be distinct names", 2),
    ("bench size past the limit", ["bench", "--sizes", "2^99999999"], None, "over the limit of 1,073,741,824", 2),
    ("bench members past the limit", ["bench", "--population", "--members", "100000"], None,
     "over the limit of 10,000", 2),
    ("bench --out is a file", ["bench", "--out", "{out}/metadata.json", "--sizes", "2^10"], None,
     "bench output folder", 2),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(case, stored, tmp_path, capsys, monkeypatch):
    _, args, text, fragment, code = case
    if "cupy" in args:
        monkeypatch.setitem(sys.modules, "cupy", None)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for name, source in PLUGINS.items():
        (tmp_path / name).write_text(source)
    if text is not None:
        (tmp_path / "s.toml").write_text(text.replace("{tmp}", str(fresh)))
    argv = [a.replace("{study}", str(tmp_path / "s.toml")).replace("{out}", str(stored))
            .replace("{tmp}", str(fresh)).replace("{dir}", str(tmp_path)) for a in args]
    if argv[0] == "run" and "--out" not in argv and "--workers" not in argv[:2]:
        argv += ["--out", str(stored)]
    before = snapshot(stored)
    rc = cli(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("optbench: "), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err
    assert snapshot(stored) == before, "an existing result changed"
    assert not any(fresh.iterdir()) or argv[0] == "report", list(fresh.iterdir())


def test_a_study_whose_last_cell_is_invalid_trains_nothing(tmp_path, capsys):
    text = TINY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["sgd", "adam"]\nbatch_size = [32, 5000]')
    (tmp_path / "s.toml").write_text(text)
    cells = load_study(str(tmp_path / "s.toml")).cells
    assert cells[-1].config.batch_size == 5000 and len(cells) == 4  # the invalid cell comes last
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(out), "--quiet"]) == 2
    assert "nothing was trained" in capsys.readouterr().err
    assert not out.exists() or not list(out.rglob("*.parquet"))


def test_a_read_only_or_unwritable_folder_is_found_before_training(tmp_path, capsys, monkeypatch):
    """(As root chmod cannot make a folder read-only, so the refusal is simulated.)"""
    (tmp_path / "s.toml").write_text(TINY)

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    from optbench.suite.reporting import files

    monkeypatch.setattr(files, "atomic_write_text", refuse)
    trained = []
    monkeypatch.setattr(runner, "cell_rows", lambda *a, **k: trained.append(1))
    monkeypatch.setattr(runner, "population_rows", lambda *a, **k: trained.append(1))
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to results folder" in err and "Permission denied" in err and not trained


def test_a_full_disk_is_found_before_training(tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    (tmp_path / "s.toml").write_text(TINY)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, (1 << 30) - (1 << 20), 1 << 20))
    trained = []
    monkeypatch.setattr(runner, "cell_rows", lambda *a, **k: trained.append(1))
    monkeypatch.setattr(runner, "population_rows", lambda *a, **k: trained.append(1))
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "only 1.0 MB free" in capsys.readouterr().err and not trained


def test_a_damaged_cell_is_named_by_report_and_retrained_by_run(stored, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(stored, out)
    victim = sorted((out / "cells").glob("*.parquet"))[0]
    whole = victim.read_bytes()
    victim.write_bytes(whole[: len(whole) // 2])  # cut short
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{victim} is damaged" in err and "left out of the report" in err
    assert "1 damaged cell file(s) left out" in (out / "report.md").read_text()
    (tmp_path / "s.toml").write_text(TINY)
    assert main(["run", str(tmp_path / "s.toml"), "--backend", "numpy", "--out", str(out), "--no-report"]) == 0
    captured = capsys.readouterr()
    assert f"retraining {victim}: damaged" in captured.err
    assert "1 cells run, 1 skipped" in captured.out
    assert store.read_cell(victim)[0] is not None and not store.damaged_cells(out)


def test_a_garbage_cell_file_is_retrained_too(stored, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(stored, out)
    victim = sorted((out / "cells").glob("*.parquet"))[1]
    victim.write_text("garbage\n")
    (tmp_path / "s.toml").write_text(TINY)
    assert main(["run", str(tmp_path / "s.toml"), "--backend", "numpy", "--out", str(out), "--no-report",
                 "--quiet"]) == 0
    assert store.read_cell(victim)[0] is not None


def test_two_runs_on_one_folder_share_the_work(tmp_path):
    """Two processes start together on one folder: every cell is trained once."""
    text = TINY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["sgd", "adam"]\nseed = [0, 1, 2]')
    (tmp_path / "s.toml").write_text(text)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "optbench.suite.cli", "run", str(tmp_path / "s.toml"), "--out", str(out),
           "--no-report", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ran = [int(o.split(" cells run")[0].split()[-1]) for o, _ in outs]
    assert sum(ran) == 6, outs  # each cell once, between the two
    assert len(store.completed_cells(out)) == 6 and not store.damaged_cells(out)


def test_a_claimed_cell_is_left_to_its_holder(tmp_path, capsys):
    """Another process holds one cell's claim: this run trains the rest."""
    (tmp_path / "s.toml").write_text(TINY)
    out = tmp_path / "out"
    out.mkdir()
    key = load_study(str(tmp_path / "s.toml"), backend="numpy").cells[0].key
    code = ("import sys, time; from optbench.suite.studies.store import Claims\n"
            f"c = Claims({str(out)!r}); assert c.claim({key!r}); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["run", str(tmp_path / "s.toml"), "--backend", "numpy", "--out", str(out), "--no-report",
                     "--quiet"]) == 0
    finally:
        holder.kill()
    assert "1 cells run, 0 skipped (already complete), 1 left to another run" in capsys.readouterr().out
    assert key not in store.completed_cells(out)


def test_ctrl_c_keeps_the_finished_cells(tmp_path, capsys, monkeypatch):
    (tmp_path / "s.toml").write_text(TINY)
    real = runner.cell_rows
    calls = []

    def interrupt_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "cell_rows", interrupt_second)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(out), "--quiet", "--no-population"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len(store.completed_cells(out)) == 1 and store.read_metadata(out)["study"] == "tiny"


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    (tmp_path / "s.toml").write_text(TINY)
    monkeypatch.setattr(runner, "population_rows", lambda *a, **k: 1 / 0)
    argv = ["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unexpected ZeroDivisionError" in err[0] and "--debug" in err[0]
    with pytest.raises(ZeroDivisionError):
        main(["--debug", *argv])
    monkeypatch.setenv("OPTBENCH_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(argv)


def test_a_damaged_data_cache_is_regenerated(tmp_path, monkeypatch):
    pytest.importorskip("mnist1d")
    from optbench.suite.data import datasets

    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path))
    good = datasets.make_mnist1d()
    path = datasets.mnist1d_cache_path()
    for damage in (b"PK\x03\x04 not really a zip", path.read_bytes()[:1000], b""):
        path.write_bytes(damage)
        again = datasets.make_mnist1d()
        assert all(np.array_equal(good[k], again[k]) for k in good)
        with np.load(path) as f:  # and the cache is whole again
            assert f["x"].shape == good["x"].shape


def test_a_protocol_with_its_own_hidden_widths_runs(tmp_path, capsys):
    """A valid input that once failed: [fixed] hidden in a protocol."""
    path = tmp_path / "p.toml"
    path.write_text(PROTOCOL.replace("confirm_seeds = [1]", "confirm_seeds = [1]\nbracket_rounds = 0")
                    + "hidden = [8]\n[lr]\nsgd = [0.1, 0.3]\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--backend", "numpy", "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    df = store.load_results(out)
    assert set(df["hidden"]) == {"8"} and df["cell"].nunique() == 3


def test_a_protocol_finds_a_rule_of_an_installed_package(tmp_path, monkeypatch):
    """A valid input that once failed: a rule from an ``optbench.rules``
    entry point is known to a protocol as it is to a study."""
    from optbench.kernels import Rule
    from optbench.kernels import rules as registry
    from optbench.suite.protocol.spec import load_protocol

    rule = Rule(name="installed_sgd", title="t", hyper={"lr": 0.1}, symbols={}, state=(), bytes_per_param=8,
                scalars=lambda hp, t: {"lr": hp["lr"]}, update="w = w - lr * g")

    class EntryPoint:
        name, value = "installed_sgd", "somepackage:RULE"

        def load(self):
            return rule

    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()])
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    for table in ("RULES", "PLAIN"):  # registered for this test only
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    path = tmp_path / "p.toml"
    path.write_text(PROTOCOL.replace('optimizers = ["sgd"]', 'optimizers = ["sgd", "installed_sgd"]'))
    assert load_protocol(str(path)).optimizers == ("sgd", "installed_sgd")
