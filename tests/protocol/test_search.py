"""Quasi-random search: the Halton sequence, the scales each hyper-parameter
is searched in, the edge flag, bad [space] tables, and a tiny random-search
protocol end to end (trials differ in what each optimiser has, the chosen
trial is confirmed on fresh seeds, the report and a rerun)."""

import json

import numpy as np
import pytest

pytest.importorskip("tqdm")

from optbench.kernels import get_rule
from optbench.suite.protocol import search
from optbench.suite.protocol import spec as protocol_spec
from optbench.suite.protocol.report import write_protocol_report
from optbench.suite.protocol.runner import PROTOCOL_FILE, run_protocol
from optbench.suite.protocol.spec import load_protocol
from optbench.suite.workloads import Workload
from optbench.suite.studies.spec import StudyError
from optbench.suite.studies.store import load_results


def test_the_radical_inverse_and_halton_by_hand():
    assert [search.radical_inverse(i, 2) for i in range(1, 5)] == [0.5, 0.25, 0.75, 0.125]
    assert [search.radical_inverse(i, 3) for i in range(1, 4)] == pytest.approx([1 / 3, 2 / 3, 1 / 9])
    points = search.halton(16, 2)
    # Low discrepancy: 16 points put exactly one in each of 16 equal slices of the first axis.
    assert sorted(np.floor(points[:, 0] * 16).astype(int)) == list(range(16))
    shifted = search.halton(16, 2, np.array([0.3, 0.6]))
    assert np.allclose(shifted, (points + [0.3, 0.6]) % 1) and ((0 <= shifted) & (shifted < 1)).all()


@pytest.mark.parametrize("name, bounds, u, expected", [
    ("lr", (1e-4, 1e-2), 0.5, 1e-3),          # log-uniform: the middle is the geometric mean
    ("wd", (1e-5, 1e-1), 0.25, 1e-4),
    ("gamma", (0.9, 0.999), 0.5, 0.99),       # log-uniform in 1 - gamma
    ("gamma", (0.0, 0.99), 0.5, 0.9),
    ("schedule", ["constant", "cosine"], 0.7, "cosine"),
])
def test_each_hyper_parameter_is_searched_in_its_own_scale(name, bounds, u, expected):
    """The scale is the rule's (Rule.scale): momentum's gamma is a decay rate."""
    dims = search.dimensions({name: bounds} if name != "lr" else {}, bounds if name == "lr" else (0.1, 1.0),
                             get_rule("momentum"))
    scale, bounds = dims[name]
    value = search.to_value(scale, u, bounds)
    assert value == (expected if isinstance(expected, str) else pytest.approx(expected))
    if not isinstance(expected, str):
        assert search.to_unit(scale, value, bounds) == pytest.approx(u, abs=2e-3)


def test_a_rule_declares_the_scale_of_its_own_hyper_parameters():
    """Decay rates default to log1m by their range [0, 1); a rule may say otherwise."""
    from dataclasses import replace

    adam = get_rule("adam")
    assert (adam.scale("lr"), adam.scale("eps"), adam.scale("gamma"), adam.scale("wd")) == ("log", "log", "log1m",
                                                                                             "log")
    mixing = replace(adam, name="mixing", scales={"alpha": "linear"})
    assert search.dimensions({"alpha": [0.0, 0.5]}, (1e-3, 1e-2), mixing)["alpha"] == ("linear", (0.0, 0.5))


def test_trials_are_deterministic_per_workload_and_optimiser_and_flag_edges():
    dims = {"lr": ("log", (1e-4, 1e-2)), "gamma": ("log1m", (0.5, 0.999))}
    a, b = search.trials(dims, 8, "w", "momentum"), search.trials(dims, 8, "w", "momentum")
    assert a == b and a != search.trials(dims, 8, "w2", "momentum")
    assert all(1e-4 <= t["lr"] <= 1e-2 and 0.5 <= t["gamma"] <= 0.999 for t in a)
    assert len({t["lr"] for t in a}) == 8
    assert search.edges({"lr": 1e-3, "gamma": 0.9}, dims) == []
    assert search.edges({"lr": 9.5e-3, "gamma": 0.51}, dims) == [("lr", "highest"), ("gamma", "lowest")]


TINY = Workload(name="tiny-digits", description="digits, one hidden layer of 8", target=0.5,
                target_note="a test's", metric="val_error",
                dataset="digits", hidden=(8,), epochs=2, batch_size=128)
PROTOCOL = """
[study]
name = "tiny-random"

[protocol]
workloads = ["tiny-digits"]
optimizers = ["sgd", "momentum"]
tuning_seeds = [0]
confirm_seeds = [5, 6]
search = "random"
trials = 4

[space]
gamma = [0.5, 0.99]
schedule = ["constant", "cosine"]
"""


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.setattr(protocol_spec, "WORKLOADS", {"tiny-digits": TINY})

    def write(text=PROTOCOL):
        path = tmp_path / "tiny.toml"
        path.write_text(text)
        return str(path)
    return write


def test_a_random_search_protocol_end_to_end(tiny, tmp_path):
    protocol = load_protocol(tiny(), backend="numpy")
    out = tmp_path / "out"
    summary = run_protocol(protocol, out, quiet=True)
    record = json.loads((out / PROTOCOL_FILE).read_text())
    assert record["search"] == "random" and summary.rounds == 0
    df = load_results(out)
    tune, conf = df[df["phase"] == "tune"], df[df["phase"] == "confirm"]
    assert tune["cell"].nunique() == 2 * 4 and set(conf["seed"]) == {5, 6}
    trials = {(t["optimizer"], t["trial"]): t["settings"] for t in record["random_trials"]}
    assert all("gamma" in s for (o, _), s in trials.items() if o == "momentum")
    assert not any("gamma" in s for (o, _), s in trials.items() if o == "sgd")  # sgd has no gamma
    assert {s["schedule"] for s in trials.values()} == {"constant", "cosine"}
    for g in record["grids"]:  # the confirmation runs use the chosen trial's settings
        runs = conf[conf["optimizer"] == g["optimizer"]]
        assert set(runs["lr"]) == {g["settings"]["lr"]} and g["settings"] in trials.values()
        if g["optimizer"] == "momentum":
            assert all(json.loads(h)["gamma"] == g["settings"]["gamma"] for h in runs["hyper"])
    text = write_protocol_report(out).read_text()
    assert "quasi-random (scrambled Halton) trials" in text and "gamma" in text
    again = run_protocol(load_protocol(tiny(), backend="numpy"), out, quiet=True)
    assert again.ran == 0 and json.loads((out / PROTOCOL_FILE).read_text()) == record


@pytest.mark.parametrize("change, message", [
    (('search = "random"', 'search = "bayes"'), "search = 'bayes'; allowed: grid, random"),
    (("trials = 4", "trials = 1"), "trials = 1; allowed: 2 to 10000"),
    (("trials = 4\n", ""), "trials >= 2"),
    (("gamma = [0.5, 0.99]", "gamma = [0.5, 1.0]"), "decay rate"),
    (("gamma = [0.5, 0.99]", "gamma = [0.9, 0.5]"), "is empty"),
    (("gamma = [0.5, 0.99]", "beta3 = [0.1, 0.2]"), "not a hyper-parameter"),
    (("gamma = [0.5, 0.99]", "lr = [0.1, 0.2]"), "lr's range is its grid's"),
    (('search = "random"\ntrials = 4', ""), "belong to search"),
])
def test_bad_random_searches_are_refused_before_anything_trains(tiny, change, message):
    with pytest.raises(StudyError, match=message):
        load_protocol(tiny(PROTOCOL.replace(*change)))


def test_rounding_keeps_values_short_and_inside_their_ranges():
    for u in np.linspace(0, 0.999, 50):
        v = search.to_value("log", float(u), (1e-8, 1e-4))
        assert 1e-8 <= v <= 1e-4 and v == float(f"{v:.3g}")
        alpha = search.to_value("log1m", float(u), (0.9, 0.99999))
        assert 0.9 <= alpha < 1 and 1 - alpha == pytest.approx(float(f"{1 - alpha:.3g}"))
