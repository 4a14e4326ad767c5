"""Study files: expansion into cells, stable hashes, and clear errors."""

import pytest

from optbench.suite.studies.spec import StudyError, builtin_studies, cell_key, load_study

GOOD = """
[study]
name = "t"
[fixed]
dataset = "digits"
hidden = [16]
epochs = 2
[grid]
optimizer = ["sgd", "adam"]
batch_size = [32, "full"]
seed = [0, 1]
[lr]
sgd = [0.01, 0.1, 0.3]
adam = [0.001]
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_expansion_with_per_optimiser_lr_grids(tmp_path):
    study = load_study(write(tmp_path, GOOD))
    assert study.name == "t"
    # sgd: 3 lrs x 2 batch sizes x 2 seeds; adam: 1 x 2 x 2
    assert len(study.cells) == 12 + 4
    lrs = {(c.config.optimizer.name, c.config.optimizer.given.get("lr")) for c in study.cells}
    assert lrs == {("sgd", 0.01), ("sgd", 0.1), ("sgd", 0.3), ("adam", 0.001)}
    assert {c.config.batch_size for c in study.cells} == {32, "full"}
    assert len({c.key for c in study.cells}) == len(study.cells)


def test_cell_keys_are_stable_and_depend_on_every_field(tmp_path):
    a = load_study(write(tmp_path, GOOD))
    b = load_study(write(tmp_path, GOOD, "again.toml"))
    assert [c.key for c in a.cells] == [c.key for c in b.cells]
    c = load_study(write(tmp_path, GOOD.replace("epochs = 2", "epochs = 3"), "c.toml"))
    assert not {x.key for x in a.cells} & {x.key for x in c.cells}
    assert cell_key(a.cells[0].config) == a.cells[0].key


def test_backend_override_changes_the_cells(tmp_path):
    study = load_study(write(tmp_path, GOOD), backend="numpy")
    assert {c.config.backend for c in study.cells} == {"numpy"}


def test_builtin_studies_load():
    names = builtin_studies()
    assert "optimisers-grid" in names and "smoke" in names
    grid = load_study("optimisers-grid")
    cfgs = [c.config for c in grid.cells]
    assert {c.optimizer.name for c in cfgs} == {"sgd", "momentum", "nesterov", "rmsprop", "adadelta", "adam"}
    assert {c.batch_size for c in cfgs} >= {"full"} and len({c.batch_size for c in cfgs}) == 3
    assert len({c.init for c in cfgs}) >= 2 and len({c.seed for c in cfgs}) >= 3
    assert {c.workload.dataset for c in cfgs} == {"mnist1d"}


@pytest.mark.parametrize("text, message", [
    ("[fixed\nx = 1", "not valid TOML"),
    ("[settings]\nx = 1", r"unknown table \[settings\]"),
    ("[protocol]\nworkloads = ['digits-mlp']", "a protocol .* `optbench run` runs it"),
    ("[fixed]\nlearning_rate = 0.1", "unknown key 'learning_rate'; allowed: dataset"),
    ("[grid]\noptimizer = []", "expands to zero cells"),
    ("[grid]\noptimizer = ['adamw']", "unknown optimiser 'adamw'; allowed: sgd"),
    ("[fixed]\ndataset = 'imagenet'", "dataset = 'imagenet' is not allowed"),
    ("[grid]\nseed = 3", "seed must be a list"),
    ("[fixed]\nbatch_size = 0", "batch_size must be a positive integer"),
    ("[lr]\nadamw = [0.1]", "unknown optimiser 'adamw'"),
    ("[lr]\nsgd = 0.1", "must be a non-empty list of numbers"),
    ("[fixed]\nlr = 0.1\n[lr]\nsgd = [0.1]", "not both"),
    ("[fixed]\nhidden = [0]", "hidden must be a list of positive integers"),
    ("[fixed]\nhyper = {beta1 = 0.9}", "no hyper-parameter 'beta1'"),
    ("[fixed]\nepochs = 2\n[grid]\nepochs = [3]", "both in \\[fixed\\] and in \\[grid\\]"),
    ("[fixed]\nlr = -1", r"cell lr=-1: hyper-parameter 'lr' of rule 'adam' must be finite and in \(0, inf\)"),
    ("[fixed]\nlr = inf", "must be finite"),
    ("[fixed]\nlr = nan", "must be finite"),
    ("[fixed]\noptimizer = 'adam'\nhyper = {gamma = 1.0}", r"'gamma' of rule 'adam' must be finite and in \[0, 1\)"),
    ("[fixed]\noptimizer = 'rmsprop'\nhyper = {eps = 0.0}", "'eps' of rule 'rmsprop'"),
    ("[fixed]\nstandardize = 'false'", "standardize must be true or false"),
    ("[fixed]\nepochs = 0", "epochs must be a positive integer"),
    ("[fixed]\ndropout = 1.0", r"dropout must be a probability in \[0, 1\)"),
    ("[fixed]\ndropout = -0.1", "dropout must be a probability"),
    ("[study]\nname = '../../x'", "is not a name"),
    ("[study]\nname = '/abs'", "is not a name"),
    ("[grid]\nseed = [0, 0]", "lists a value twice"),
    ("[fixed]\ncheckpoint = 'c.npz'\n[grid]\nseed = [0, 1]", "would be written by 2 cells"),
    ("[fixed]\ncheckpoint = 'c-{nope}.npz'", "checkpoint template 'c-{nope}.npz' is invalid"),
    ("[fixed]\ninit = 'checkpoint'\ninit_from = 'missing.npz'", "checkpoint missing.npz does not exist"),
    ("[fixed]\ninit = 'checkpoint'", "needs init_from"),
    ("[fixed]\nhyper = {lr = 0.1}", "give lr, l2 and wd as their own settings"),
])
def test_bad_study_files_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(StudyError, match=message) as info:
        load_study(path)
    assert path in str(info.value)


def test_unknown_study_name_lists_the_builtin_ones():
    with pytest.raises(StudyError, match="unknown study 'nope'.*default"):
        load_study("nope")


def test_a_cell_from_a_checkpoint_is_keyed_by_its_content(tmp_path):
    """Retrain the checkpoint (same path, new bytes) and the cell is a new
    cell: a rerun trains it instead of keeping stale results."""
    ckpt = tmp_path / "c.npz"
    ckpt.write_bytes(b"first version")
    path = write(tmp_path, f'[fixed]\ninit = "checkpoint"\ninit_from = "{ckpt}"\n')
    first = load_study(path).cells[0]
    assert first.config.init_from_sha256 == __import__("hashlib").sha256(b"first version").hexdigest()
    ckpt.write_bytes(b"retrained")
    assert load_study(path).cells[0].key != first.key


def test_a_checkpoint_template_gives_each_cell_its_own_file(tmp_path):
    path = write(tmp_path, '[fixed]\ncheckpoint = "ckpt/{optimizer}-{seed}.npz"\n'
                           '[grid]\noptimizer = ["sgd", "adam"]\nseed = [0, 1]\n')
    targets = sorted(c.config.checkpoint for c in load_study(path).cells)
    assert targets == ["ckpt/adam-0.npz", "ckpt/adam-1.npz", "ckpt/sgd-0.npz", "ckpt/sgd-1.npz"]
