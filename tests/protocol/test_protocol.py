"""A protocol end to end on a tiny workload: tuning rounds that bracket the
lr, confirmation on fresh seeds, the report, a rerun that trains nothing,
and bad protocol files refused before anything trains."""

import dataclasses
import json

import pandas as pd
import pytest

pytest.importorskip("tqdm")

from optbench.suite.cli import main
from optbench.suite.protocol import spec as protocol_spec
from optbench.suite.protocol.report import write_protocol_report
from optbench.suite.protocol.runner import PROTOCOL_FILE, run_protocol
from optbench.suite.protocol.spec import load_protocol
from optbench.suite.workloads import Workload
from optbench.suite.studies.spec import StudyError
from optbench.suite.studies.store import load_results

TINY = Workload(name="tiny-digits", description="digits, one hidden layer of 8", target=1.5,
                target_note="a test's", dataset="digits", hidden=(8,), epochs=3, batch_size=128)
PROTOCOL = """
[study]
name = "tiny"
description = "a protocol test"

[protocol]
workloads = ["tiny-digits"]
optimizers = ["sgd", "adam"]
tuning_seeds = [0, 1]
confirm_seeds = [5, 6, 7]
bracket_rounds = 2

[lr]
sgd = [0.001, 0.003]
"""


@pytest.fixture(autouse=True)
def tiny_registry(monkeypatch):
    monkeypatch.setattr(protocol_spec, "WORKLOADS", {"tiny-digits": TINY})


def write(tmp_path, text=PROTOCOL):
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_tuning_brackets_then_confirms_on_fresh_seeds(tmp_path):
    protocol = load_protocol(str(write(tmp_path)), backend="numpy")
    out = tmp_path / "out"
    summary = run_protocol(protocol, out, quiet=True)
    record = json.loads((out / PROTOCOL_FILE).read_text())
    grids = {g["optimizer"]: g for g in record["grids"]}
    # sgd's grid started far too small: its best lr sat on the top edge, so it grew upwards.
    assert max(grids["sgd"]["lrs"]) > 0.003 and summary.rounds >= 1
    assert grids["adam"]["lrs"][:5] == [3e-4, 1e-3, 3e-3, 1e-2, 3e-2] or len(grids["adam"]["lrs"]) >= 5
    df = load_results(out)
    tune, conf = df[df["phase"] == "tune"], df[df["phase"] == "confirm"]
    assert set(tune["seed"]) == {0, 1} and set(conf["seed"]) == {5, 6, 7}
    for o, g in grids.items():  # confirmation at the chosen lr only
        assert set(conf[conf["optimizer"] == o]["lr"]) == {g["chosen"]}
        inside = min(g["lrs"]) < g["chosen"] < max(g["lrs"])
        edge = any(e["optimizer"] == o for e in record["edges"])
        assert inside != edge  # either bracketed, or flagged
    assert set(df["workload"]) == {"tiny-digits"}


def test_the_report_opens_with_ranking_profile_and_warnings(tmp_path):
    protocol = load_protocol(str(write(tmp_path)), backend="numpy")
    out = tmp_path / "out"
    run_protocol(protocol, out, quiet=True)
    text = write_protocol_report(out).read_text()
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads[:6] == ["## Ranking", "## Performance profile", "## Warnings", "## Tunability",
                         "## Rankings over the run", "## Workloads"]
    assert "profile score [95%]" in text and "beats the second" in text
    assert "tau 25% -> end" in text.split("## Rankings over the run")[1].split("##")[0]
    assert "[" in text.split("## Ranking")[1].split("##")[0]  # intervals beside the means
    for name in ("profile", "convergence", "tuning", "budget"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0


def test_a_rerun_trains_nothing_and_takes_the_same_decisions(tmp_path):
    protocol = load_protocol(str(write(tmp_path)), backend="numpy")
    out = tmp_path / "out"
    run_protocol(protocol, out, quiet=True)
    first = json.loads((out / PROTOCOL_FILE).read_text())
    again = run_protocol(protocol, out, quiet=True)
    assert again.ran == 0 and json.loads((out / PROTOCOL_FILE).read_text()) == first


@pytest.mark.parametrize("change, message", [
    (("confirm_seeds = [5, 6, 7]", "confirm_seeds = [1, 6, 7]"), "selection bias"),
    (('workloads = ["tiny-digits"]', 'workloads = ["nope"]'), "unknown workload 'nope'"),
    (('optimizers = ["sgd", "adam"]', 'optimizers = ["sgd", "adamm"]'), "unknown optimiser 'adamm'"),
    (("bracket_rounds = 2", "bracket_rounds = 2\ndecades = 1"), "at least 2"),
    (("bracket_rounds = 2", 'bracket_rounds = "2"'), "wrong type"),
    (("sgd = [0.001, 0.003]", "sgd = [0.001]"), "at least two"),
])
def test_bad_protocols_are_refused_before_anything_trains(tmp_path, change, message):
    with pytest.raises(StudyError, match=message):
        load_protocol(str(write(tmp_path, PROTOCOL.replace(*change))))


def test_the_command_line_runs_and_reports_a_protocol(tmp_path, capsys):
    path, out = write(tmp_path), tmp_path / "cli"
    assert main(["run", str(path), "--out", str(out), "--backend", "numpy", "--quiet"]) == 0
    assert "bracketing round" in capsys.readouterr().out
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.md").is_file()
    assert isinstance(load_results(out), pd.DataFrame)


def test_cells_of_an_earlier_budget_are_kept_but_not_scored(tmp_path, monkeypatch):
    protocol = load_protocol(str(write(tmp_path)), backend="numpy")
    out = tmp_path / "out"
    run_protocol(protocol, out, quiet=True)
    old = set(load_results(out)["cell"])
    longer = dataclasses.replace(TINY, epochs=4)
    monkeypatch.setattr(protocol_spec, "WORKLOADS", {"tiny-digits": longer})
    run_protocol(load_protocol(str(write(tmp_path)), backend="numpy"), out, quiet=True)
    record = json.loads((out / PROTOCOL_FILE).read_text())
    df = load_results(out)
    assert old <= set(df["cell"])  # nothing deleted
    mine = df[df["cell"].isin(record["cells"])]
    assert set(mine.groupby("cell")["epoch"].max()) == {4} and not set(record["cells"]) & old
    text = write_protocol_report(out).read_text()
    assert f"{len(old)} other cells in the folder" in text


def test_defaults_run_untuned_on_the_confirmation_seeds_and_the_report_sets_them_beside_tuned(tmp_path):
    path = write(tmp_path, PROTOCOL.replace("bracket_rounds = 2", "bracket_rounds = 0\ndefaults = true"))
    out = tmp_path / "out"
    run_protocol(load_protocol(str(path), backend="numpy"), out, quiet=True)
    df = load_results(out)
    default = df[df["phase"] == "default"]
    assert set(default["seed"]) == {5, 6, 7} and set(default["optimizer"]) == {"sgd", "adam"}
    assert set(default.groupby("optimizer")["lr"].first().items()) == {("sgd", 0.01), ("adam", 0.001)}
    record = json.loads((out / PROTOCOL_FILE).read_text())
    assert record["defaults"] and set(default["cell"]) <= set(record["cells"])
    text = write_protocol_report(out).read_text()
    section = text.split("## Defaults against tuned")[1].split("\n## ")[0]
    assert "**sgd** (lr 0.01)" in section and "**adam** (lr 0.001)" in section
    # the ranking is the tuned runs' alone
    assert "10 confirmation runs" not in text and "6 confirmation runs" in text


def test_defaults_must_be_a_boolean(tmp_path):
    with pytest.raises(StudyError, match="defaults has the wrong type"):
        load_protocol(str(write(tmp_path, PROTOCOL.replace("bracket_rounds = 2", "defaults = 1"))))


def test_batch_sizes_cross_each_workload_and_the_report_fits_best_lr_against_batch(tmp_path):
    text = PROTOCOL.replace("bracket_rounds = 2", 'bracket_rounds = 1\nbatch_sizes = [32, 128, "full"]')
    protocol = load_protocol(str(write(tmp_path, text.replace("[lr]\nsgd = [0.001, 0.003]", ""))), backend="numpy")
    names = [w.name for w in protocol.workloads]
    assert names == ["tiny-digits@b32", "tiny-digits@b128", "tiny-digits@full"]
    # each variant's grid is centred sqrt(batch / 128) times the file workload's
    small, same = (protocol.initial_grid(protocol.workload(n), "adam") for n in names[:2])
    assert max(small) < max(same)
    out = tmp_path / "out"
    run_protocol(protocol, out, quiet=True)
    record = json.loads((out / PROTOCOL_FILE).read_text())
    assert record["batch_sizes"] == [32, 128, "full"]
    assert record["variants"]["tiny-digits@full"] == {"workload": "tiny-digits", "batch_size": "full"}
    df = load_results(out)
    sizes = df.groupby("workload")["batch_size"].first().to_dict()
    assert sizes == {"tiny-digits@b32": "32", "tiny-digits@b128": "128", "tiny-digits@full": "full"}
    report = write_protocol_report(out).read_text()
    section = report.split("## Learning rate against batch size")[1].split("\n## ")[0]
    for o in ("sgd", "adam"):
        row = next(line for line in section.splitlines() if f"**{o}**" in line)
        assert row.startswith("| `tiny-digits` |") and " [" in row  # k with its interval
    assert "best lr at batch 32 / 128 / full" in section
    assert (out / "figures" / "batch_scaling.png").stat().st_size > 0


@pytest.mark.parametrize("batch_sizes, message", [
    ("[0, 32]", "batch_sizes must be distinct positive integers"),
    ("[32, 32]", "batch_sizes must be distinct"),
    ('["half"]', "batch_sizes must be"),
    ("[true]", "batch_sizes must be"),
    ("[]", "batch_sizes must be"),
    ("[32, 100000]", "batch"),
])
def test_bad_batch_sizes_are_refused_before_anything_trains(tmp_path, batch_sizes, message):
    text = PROTOCOL.replace("bracket_rounds = 2", f"bracket_rounds = 2\nbatch_sizes = {batch_sizes}")
    with pytest.raises(StudyError, match=message):
        load_protocol(str(write(tmp_path, text)))


def test_batch_sizes_and_a_fixed_batch_size_are_refused_together(tmp_path):
    text = PROTOCOL.replace("bracket_rounds = 2", "bracket_rounds = 2\nbatch_sizes = [32, 64]") + \
        "\n[fixed]\nbatch_size = 16\n"
    with pytest.raises(StudyError, match="keep one"):
        load_protocol(str(write(tmp_path, text)))


def test_states_confirm_again_at_each_precision_and_the_report_pairs_them_with_float32(tmp_path):
    text = PROTOCOL.replace("bracket_rounds = 2", 'bracket_rounds = 1\nstates = ["bf16", "bf16-sr"]')
    protocol = load_protocol(str(write(tmp_path, text)), backend="numpy")
    out = tmp_path / "out"
    run_protocol(protocol, out, quiet=True)
    record = json.loads((out / PROTOCOL_FILE).read_text())
    assert record["states"] == ["bf16", "bf16-sr"]
    df = load_results(out)
    low, conf = df[df["phase"] == "precision"], df[df["phase"] == "confirm"]
    assert set(low["state"]) == {"bf16", "bf16-sr"} and set(low["seed"]) == set(conf["seed"]) == {5, 6, 7}
    assert set(low["cell"]) <= set(record["cells"])
    for (o, state), g in low.groupby(["optimizer", "state"]):  # at the chosen lr, every confirmation seed
        assert set(g["lr"]) == set(conf[conf["optimizer"] == o]["lr"]) and g["seed"].nunique() == 3
    report = write_protocol_report(out).read_text()
    section = report.split("## State precision")[1].split("\n## ")[0]
    assert "**bf16**" in section and "**bf16-sr**" in section and "Ranking: `tiny-digits` tau" in section
    assert "6 confirmation runs" in report  # the ranking is float32's alone


@pytest.mark.parametrize("states, message", [('["fp32"]', "states must be"), ('["bf16", "bf16"]', "distinct"),
                                             ('["fp16"]', "states must be")])
def test_bad_states_are_refused(tmp_path, states, message):
    text = PROTOCOL.replace("bracket_rounds = 2", f"bracket_rounds = 2\nstates = {states}")
    with pytest.raises(StudyError, match=message):
        load_protocol(str(write(tmp_path, text)))
