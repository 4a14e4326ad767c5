"""A protocol's results are a function of the folder's complete cells of this
version: a second version of a protocol in the same folder, two runs of one
protocol at once, and a run that must wait for a cell another run holds each
end with the protocol.json, scored cells and report of one uninterrupted run."""

import json
import multiprocessing
import re
import time

import pytest

pytest.importorskip("tqdm")

from optbench.suite.protocol import runner as protocol_runner  # noqa: E402
from optbench.suite.protocol import spec as protocol_spec  # noqa: E402
from optbench.suite.protocol.report import write_protocol_report  # noqa: E402
from optbench.suite.protocol.runner import PROTOCOL_FILE, run_protocol  # noqa: E402
from optbench.suite.protocol.spec import load_protocol  # noqa: E402
from optbench.suite.studies import store  # noqa: E402
from optbench.suite.workloads import Workload  # noqa: E402

TINY = Workload(name="tiny-digits", description="digits, one hidden layer of 8", target=1.5,
                target_note="a test's", dataset="digits", hidden=(8,), epochs=2, batch_size=256)
PROTOCOL = """
[study]
name = "shared"
[protocol]
workloads = ["tiny-digits"]
optimizers = ["sgd", "adam"]
tuning_seeds = {tuning}
confirm_seeds = {confirm}
bracket_rounds = 1
[lr]
sgd = [0.03, 0.1, 0.3]
adam = [0.001, 0.003, 0.01]
"""
FORK = multiprocessing.get_context("fork")  # the children keep the tiny workload registered


@pytest.fixture(autouse=True)
def tiny_registry(monkeypatch):
    monkeypatch.setattr(protocol_spec, "WORKLOADS", {"tiny-digits": TINY})


def protocol(tmp_path, tuning, confirm):
    path = tmp_path / f"shared-{tuning[0]}.toml"
    path.write_text(PROTOCOL.format(tuning=tuning, confirm=confirm))
    return load_protocol(str(path), backend="numpy")


def outcome(out):
    """(protocol.json, {cell key: its scored rows' values but times}, the
    report but the lines that say where and when it was written and count
    other versions' cells) of a results folder."""
    record = json.loads((out / PROTOCOL_FILE).read_text())
    df = store.load_results(out)
    mine = df[df["cell"].isin(record["cells"])]
    cells = {k: g.drop(columns=["wall_time", "examples_per_sec"]).reset_index(drop=True).to_json()
             for k, g in mine.sort_values(["cell", "epoch"]).groupby("cell")}
    report = write_protocol_report(out).read_text()
    report = re.sub(r"- (backend .*written|\d+ other cells in the folder).*\n", "", report)
    return record, cells, report


def test_a_second_version_scores_only_its_own_cells(tmp_path):
    """Version 2 tunes on version 1's confirmation seeds: the same runs, in
    another role, are other cells; nothing of version 1 is scored."""
    v1, v2 = protocol(tmp_path, [0, 1], [5, 6]), protocol(tmp_path, [5, 6], [7, 8])
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    run_protocol(v1, shared, quiet=True)
    first = set(store.load_results(shared)["cell"])
    run_protocol(v2, shared, quiet=True)
    run_protocol(v2, alone, quiet=True)
    record, cells, report = outcome(shared)
    assert not set(record["cells"]) & first  # version 1's confirmation runs are not version 2's tuning runs
    assert outcome(alone) == (record, cells, report)
    df = store.load_results(shared)
    conf = df[df["cell"].isin(record["cells"]) & (df["phase"] == "confirm")]
    assert set(conf["seed"]) == {7, 8} and conf["cell"].nunique() == 2 * 2


def _claim_and_hold(out, key, held, seconds):
    claims = store.Claims(out)
    assert claims.claim(key)
    held.set()
    time.sleep(seconds)  # then exits without training it: a run that was stopped


def test_a_protocol_waits_for_a_cell_another_run_holds(tmp_path, monkeypatch):
    p = protocol(tmp_path, [0, 1], [5, 6])
    reference = tmp_path / "reference"
    run_protocol(p, reference, quiet=True)
    out = tmp_path / "out"
    store.preflight(out)
    tuning_cell = p.cell(p.workload("tiny-digits"), "adam", {"lr": 0.003}, 0, "tune").key
    held = FORK.Event()
    holder = FORK.Process(target=_claim_and_hold, args=(out, tuning_cell, held, 3.0))
    holder.start()
    assert held.wait(30)
    monkeypatch.setattr(protocol_runner, "POLL_SECONDS", 0.2)
    summary = run_protocol(p, out, quiet=True)
    holder.join()
    assert store.is_complete(out, tuning_cell)  # trained here once the holder let go, before deciding
    assert summary.ran == len(json.loads((reference / PROTOCOL_FILE).read_text())["cells"])
    assert outcome(out) == outcome(reference)


def test_two_runs_at_once_end_as_one(tmp_path):
    p = protocol(tmp_path, [0, 1], [5, 6])
    reference, out = tmp_path / "reference", tmp_path / "out"
    run_protocol(p, reference, quiet=True)
    runs = [FORK.Process(target=run_protocol, args=(p, out), kwargs={"quiet": True}) for _ in range(2)]
    for r in runs:
        r.start()
        time.sleep(0.5)
    for r in runs:
        r.join(300)
        assert r.exitcode == 0
    assert outcome(out) == outcome(reference)


def test_the_report_names_every_cell_it_leaves_out(tmp_path):
    p = protocol(tmp_path, [0, 1], [5, 6])
    out = tmp_path / "out"
    run_protocol(p, out, quiet=True)
    record = json.loads((out / PROTOCOL_FILE).read_text())
    confirm = sorted(k for k in record["cells"]
                     if store.read_cell(out / "cells" / f"{k}.parquet")[0].column("phase")[0].as_py() == "confirm")
    damaged, missing = (out / "cells" / f"{confirm[0]}.parquet"), (out / "cells" / f"{confirm[1]}.parquet")
    damaged.write_bytes(damaged.read_bytes()[:100])
    missing.unlink()
    text = write_protocol_report(out).read_text()
    warnings = text.split("## Warnings")[1].split("\n## ")[0]
    assert f"**2 of the protocol's {len(record['cells'])} cells are left out**" in warnings
    assert f"`cells/{confirm[0]}.parquet` is damaged (unreadable" in warnings
    assert f"`cells/{confirm[1]}.parquet` is missing" in warnings


CAPPED = """
from optbench.kernels import Rule
RULE = Rule(name="capped_sgd", title="SGD with lr at most 0.01", hyper={"lr": 0.001},
            ranges={"lr": "(0, 0.01]"}, symbols={"eta": "lr"}, state=(), bytes_per_param=8,
            scalars=lambda hp, t: {"lr": hp["lr"]}, update="w = w - lr * g")
"""


def test_a_grid_is_not_extended_past_the_rules_lr_range(tmp_path):
    (tmp_path / "capped.py").write_text(CAPPED)
    path = tmp_path / "capped.toml"
    path.write_text('rules = ["capped.py"]\n' + PROTOCOL.format(tuning=[0], confirm=[5])
                    .replace('optimizers = ["sgd", "adam"]', 'optimizers = ["capped_sgd"]')
                    .replace("sgd = [0.03, 0.1, 0.3]\nadam = [0.001, 0.003, 0.01]", "capped_sgd = [0.003, 0.01]"))
    out = tmp_path / "out"
    run_protocol(load_protocol(str(path), backend="numpy"), out, quiet=True)
    record = json.loads((out / PROTOCOL_FILE).read_text())
    assert record["grids"][0]["lrs"] == [0.003, 0.01] and record["grids"][0]["chosen"] == 0.01
    assert record["edges"][0]["range"] == "(0, 0.01]"
    assert set(store.load_results(out)["lr"]) <= {0.003, 0.01}  # nothing trained outside the range
    assert "the next grid step lies outside capped_sgd's lr range (0, 0.01]" in write_protocol_report(out).read_text()


def test_a_protocol_folder_of_0_2_is_refused_then_rekeyed_by_convert(tmp_path, monkeypatch, capsys):
    """optbench 0.2 keyed a protocol's cells without their phase: such a
    folder is refused in one line, and ``optbench convert`` re-keys it into
    what a fresh run writes."""
    from optbench.suite.cli import main
    from optbench.suite.reporting import kinds
    from optbench.suite.studies import spec as study_spec

    p = protocol(tmp_path, [0, 1], [5, 6])
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    run_protocol(p, fresh, quiet=True)
    with monkeypatch.context() as m:  # as 0.2 wrote it
        m.setattr(study_spec, "role_key", lambda key, role: key)
        m.setattr(kinds, "FORMAT", 2)
        m.setattr(store, "refuse_legacy", lambda out: None)
        run_protocol(protocol(tmp_path, [0, 1], [5, 6]), old, quiet=True)
    assert set(store.cell_files(old)) != set(store.cell_files(fresh))
    assert main(["report", str(old)]) == 2
    assert "re-key them with `optbench convert" in capsys.readouterr().err
    assert main(["convert", str(old)]) == 0
    assert set(store.cell_files(old)) == set(store.cell_files(fresh))
    assert outcome(old) == outcome(fresh)
    assert main(["run", str(tmp_path / "shared-0.toml"), "--backend", "numpy", "--out", str(old), "--quiet"]) == 0
    assert "0 run now" in capsys.readouterr().out  # every cell found under its new key
