"""A study with a plug-in rule: `rules = [...]` in the study file, cells keyed
by the rule's content, the same rows on a Dask cluster, and a bad rule file
refused before anything trains."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("tqdm")

from optbench.suite.studies import runner
from optbench.suite.studies.report import write_report
from optbench.suite.studies.spec import StudyError, load_study
from optbench.suite.studies.store import load_results
from optbench.suite.training.loop import TIMING_COLUMNS

EXAMPLE = Path(__file__).parents[2] / "suite" / "studies" / "examples" / "signum.py"
STUDY = """
rules = ["{rules}"]

[fixed]
dataset = "digits"
hidden = [16]
epochs = 2
[grid]
optimizer = ["signum", "adam"]
seed = [0, 1]
"""


@pytest.fixture(autouse=True)
def fresh(plugin_registry):
    """No plug-in registered here leaks into another test."""


def study_file(tmp_path, rules="plug/signum.py") -> Path:
    (tmp_path / "plug").mkdir(exist_ok=True)
    shutil.copy(EXAMPLE, tmp_path / "plug" / "signum.py")
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(rules=rules))
    return path


def comparable(df):
    return df.drop(columns=list(TIMING_COLUMNS)).sort_values(["cell", "epoch"]).reset_index(drop=True)


def test_a_plug_in_rule_trains_beside_the_built_ins_and_reaches_the_report(tmp_path):
    study = load_study(str(study_file(tmp_path)), backend="numpy")
    assert study.rule_files == ((tmp_path / "plug" / "signum.py").resolve(),)
    out = tmp_path / "out"
    assert runner.run_study(study, out, "numpy", quiet=True).ran == 4
    df = load_results(out)
    assert set(df.optimizer) == {"signum", "adam"}
    signum = df[(df.optimizer == "signum") & (df.epoch == 2)]
    assert not signum.diverged.any() and signum.train_loss.notna().all()
    assert "signum" in write_report(out).read_text()


def test_editing_the_rule_makes_its_cells_new(tmp_path, plugin_registry, monkeypatch):
    path = study_file(tmp_path)
    keys = {c.config.optimizer.name: c.key for c in load_study(str(path)).cells if c.config.seed == 0}
    rule = tmp_path / "plug" / "signum.py"
    rule.write_text(rule.read_text().replace('"lr": 1e-3', '"lr": 2e-3'))
    # A new process: nothing loaded yet.
    import optbench.kernels.plugins as plugins

    for table in (plugin_registry.RULES, plugin_registry.SOURCES, plugin_registry.PLAIN):
        table.pop("signum", None)
    monkeypatch.setattr(plugins, "_LOADED", {})
    changed = {c.config.optimizer.name: c.key for c in load_study(str(path)).cells if c.config.seed == 0}
    assert changed["adam"] == keys["adam"]  # built-in cells keep their keys
    assert changed["signum"] != keys["signum"]


def test_a_dask_cluster_loads_the_plug_in_and_gives_the_same_rows(tmp_path):
    pytest.importorskip("dask.distributed")
    study = load_study(str(study_file(tmp_path)), backend="numpy")
    local, dask = tmp_path / "local", tmp_path / "dask"
    runner.run_study(study, local, "numpy", quiet=True)
    assert runner.run_study(study, dask, "numpy", workers=2, quiet=True).ran == 4
    pd.testing.assert_frame_equal(comparable(load_results(dask)), comparable(load_results(local)))


def test_a_bad_or_missing_rule_file_is_a_study_error(tmp_path):
    path = study_file(tmp_path, rules="plug/missing.py")
    with pytest.raises(StudyError, match=r"study\.toml: rules: rules file .*missing\.py' not found"):
        load_study(str(path))
    (tmp_path / "plug" / "broken.py").write_text("from optbench.kernels import Rule\nRULE = Rule(\n")
    path.write_text(STUDY.format(rules="plug/broken.py"))
    with pytest.raises(StudyError, match=r"broken\.py:2: syntax error"):
        load_study(str(path))
    path.write_text(STUDY.format(rules="plug/signum.py").replace('rules = ["plug/signum.py"]', "rules = 3"))
    with pytest.raises(StudyError, match="rules must be a list"):
        load_study(str(path))
