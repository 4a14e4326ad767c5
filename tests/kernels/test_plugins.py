"""Plug-in rules: a user's file, a study's ``rules`` key, an installed
package's entry point. A plug-in gets what a built-in gets (kernels on every
backend, population form, validation), and a bad file is one clear error
naming the file and the line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import optbench.kernels.rules as registry
from optbench.kernels import Optimizer, PopulationOptimizer, RULES, get_rule
from optbench.kernels.plugins import PluginError, load_file
from optbench.kernels.validate import check_rule, reference_for
from optbench.suite.cli import main

EXAMPLE = Path(__file__).parents[2] / "suite" / "studies" / "examples" / "signum.py"


@pytest.fixture(autouse=True)
def fresh(plugin_registry):
    """No plug-in registered here leaks into another test."""


def write(tmp_path, text: str, name: str = "myrule.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


RULE_TEXT = '''
    from optbench.kernels import Rule

    RULE = Rule(
        name="{name}", title="Test rule", hyper={{"lr": 0.01, "gamma": 0.5}},
        ranges={{"lr": "(0, inf)", "gamma": "[0, 1)"}}, symbols={{"eta": "lr"}},
        state=("m",), bytes_per_param=20,
        scalars=lambda hp, t: {{"lr": hp["lr"], "gamma": hp["gamma"]}},
        update="""
            {line1}
            {line2}
        """,
    )
'''


def rule_file(tmp_path, name="halfmom", line1="m = gamma * m + g", line2="w = w - lr * m", file="myrule.py"):
    return write(tmp_path, RULE_TEXT.format(name=name, line1=line1, line2=line2), file)


# ------------------------------------------------------------- a good plug-in

def test_the_example_gets_every_backend_and_validates_against_its_own_reference(backend):
    (rule,) = load_file(EXAMPLE)
    assert get_rule("signum") is rule and "signum" in RULES
    assert reference_for("signum")[0] == "plug-in"
    for form in ("coupled", "decoupled"):
        for n in (5, 1029):
            check = check_rule("signum", form, n, backend)
            assert check.ok, check


@pytest.mark.parametrize("example, kind", [("lamb_plugin", "plug-in"), ("orthomomentum", "own text")])
def test_the_examples_beyond_the_element_validate_on_every_backend(example, kind, backend):
    """The README's examples of a per-tensor reduction (LAMB) and a matrix
    step (orthogonalised momentum): a 4099-parameter check runs on weight
    matrices and biases (kernels.validate.validation_layout)."""
    (rule,) = load_file(EXAMPLE.parent / f"{example}.py")
    assert reference_for(example)[0].startswith(kind.split()[0])
    for form in ("coupled", "decoupled"):
        check = check_rule(example, form, 4099, backend)
        assert check.ok, check


def test_a_wrong_reference_fails_validation(tmp_path):
    path = write(tmp_path, EXAMPLE.read_text().replace('hp["lr"] * np.sign(mu)', '0.5 * hp["lr"] * np.sign(mu)'),
                 "wrong.py")
    load_file(path)
    from optbench.kernels import get_backend

    assert not check_rule("signum", "coupled", 1029, get_backend("numpy")).ok


def test_without_a_reference_its_own_text_is_the_reference(tmp_path, backend):
    load_file(rule_file(tmp_path))
    assert reference_for("halfmom")[0] == "own text"
    assert check_rule("halfmom", "decoupled", 1029, backend).ok


def test_its_population_form_is_its_single_run_bit_for_bit(tmp_path):
    load_file(rule_file(tmp_path))
    rng = np.random.default_rng(0)
    P, n = 3, 37
    params = rng.standard_normal((P, n)).astype(np.float32)
    singles = [params[m].copy() for m in range(P)]
    lrs = [0.1, 0.01, 0.3]
    pop = PopulationOptimizer(params, ["halfmom"] * P, [{"lr": lr} for lr in lrs], backend="numpy")
    opts = [Optimizer("halfmom", singles[m], lr=lrs[m], backend="numpy") for m in range(P)]
    for _ in range(4):
        g = rng.standard_normal((P, n)).astype(np.float32)
        pop.step(g)
        for m in range(P):
            opts[m].step(g[m].copy())
    for m in range(P):
        np.testing.assert_array_equal(params[m], singles[m])


def test_loading_twice_is_a_no_op_and_a_second_file_cannot_take_the_name(tmp_path):
    first = load_file(rule_file(tmp_path))
    assert load_file(tmp_path / "myrule.py") is first
    other = rule_file(tmp_path, file="other.py")
    with pytest.raises(PluginError, match=r"other\.py.*'halfmom' is already the plug-in from .*myrule\.py"):
        load_file(other)


def test_an_entry_point_is_loaded_on_the_first_unknown_name(tmp_path, monkeypatch):
    path = rule_file(tmp_path, name="fromapackage")
    module = {}
    exec(compile(path.read_text(), str(path), "exec"), module)

    class EntryPoint:
        name, value = "mine", "mypackage.rules:RULE"

        def load(self):
            return module["RULE"]

    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()] if group == registry.ENTRY_POINT_GROUP else [])
    assert "fromapackage" not in RULES
    assert get_rule("fromapackage").name == "fromapackage"
    assert "entry point 'mine'" in registry.SOURCES["fromapackage"]


# ------------------------------------------------------------- bad plug-ins

def _error(path) -> str:
    with pytest.raises(PluginError) as info:
        load_file(path)
    return str(info.value)


def test_a_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "from optbench.kernels import Rule\n\nRULE = Rule(name='x',\n")
    assert _error(path).startswith(f"{path}:3: syntax error")


def test_an_unknown_name_in_the_update_names_file_line_and_update_line(tmp_path):
    path = rule_file(tmp_path, line2="w = w - lr * mom")
    message = _error(path)
    assert message.startswith(f"{path}:4: ")  # the Rule(...) call
    assert "'mom'" in message and "line 2" in message


def test_an_undeclared_state_is_named(tmp_path):
    path = rule_file(tmp_path, line1="k = gamma * k + g", line2="w = w - lr * k")
    message = _error(path)
    assert f"{path}:4" in message and "'k'" in message and "state" in message


def test_a_file_without_rule_a_bad_name_a_clash_and_user_errors(tmp_path):
    assert "defines neither RULE" in _error(write(tmp_path, "x = 1\n", "empty.py"))
    assert "lower-case" in _error(rule_file(tmp_path, name="My-Rule", file="bad_name.py"))
    assert "'adam' is already a built-in rule" in _error(rule_file(tmp_path, name="adam", file="clash.py"))
    path = write(tmp_path, "import math\n\nx = 1 / 0\n", "boom.py")
    assert _error(path) == f"{path}:3: ZeroDivisionError: division by zero"
    assert "not found" in _error(tmp_path / "missing.py")
    assert "must be a Python file" in _error(write(tmp_path, "x", "rules.txt"))


TRIAL_TEXT = '''
    from optbench.kernels import Rule

    def scalars(hp, t):
        if hp["lr"] != 0.01:  # a cache or a check that only holds for one member
            raise ValueError("only the default lr is supported")
        return {{"lr": hp["lr"], "gamma": hp["gamma"]}}

    RULE = Rule(
        name="{name}", title="Test rule", hyper={{"lr": 0.01, "gamma": 0.5}},
        ranges={{"lr": "(0, inf)", "gamma": "[0, 1)"}}, symbols={{"eta": "lr"}},
        state=("m",), bytes_per_param=20, scalars={scalars},
        update="""
            m = gamma * m + g
            w = {update}
        """,
    )
'''


def test_a_rule_that_cannot_train_a_population_is_refused_at_load(tmp_path):
    """The trial step: what validate does not reach (members with their own
    hyper-parameters, per-tensor views) is tried at load, and a failure is
    one line naming the file, the rule and the reason."""
    path = write(tmp_path, TRIAL_TEXT.format(name="onelr", scalars="scalars", update="w - lr * m"), "onelr.py")
    assert _error(path) == (f"{path}: rule 'onelr' fails a trial step of a two-member population, as optbench "
                            "run would take it: RuleError: rule 'onelr': its scalars raised ValueError at step "
                            "t = 1 with gamma = 0.5, l2 = 0, lr = 0.005, wd = 0.01: only the default lr is supported")
    path = write(tmp_path, TRIAL_TEXT.format(name="blowup", scalars='lambda hp, t: {"lr": hp["lr"], "gamma": 0}',
                                             update="w / (m - m)"), "blowup.py")
    assert "rule 'blowup' gives non-finite weights" in _error(path)
    good = write(tmp_path, TRIAL_TEXT.format(name="fine", scalars='lambda hp, t: {"lr": hp["lr"], "gamma": 0.5}',
                                             update="w - lr * m"), "fine.py")
    assert [r.name for r in load_file(good)] == ["fine"]


# ------------------------------------------------------------- the command line

def test_the_commands_take_rules_files(tmp_path, capsys):
    path = rule_file(tmp_path)
    assert main(["rules", "--rules", str(path)]) == 0
    assert "halfmom" in capsys.readouterr().out
    assert main(["rules", "halfmom", "--rules", str(path)]) == 0
    out = capsys.readouterr().out
    assert "plug-in from" in out and "m = gamma * m + g" in out and "its own text" in out
    assert main(["validate", "--rules", str(path), "--only", "halfmom", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "halfmom: checked against a float64 evaluation of its own update text" in out
    assert "all checks passed" in out


def test_a_bad_rules_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = rule_file(tmp_path, line2="w = w - lr * mom")
    assert main(["validate", "--rules", str(path), "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"optbench: {path}:4: ")
