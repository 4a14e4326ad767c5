"""Rules of your own: plug-in files and installed packages.

A plug-in is a Python file that defines ``RULE`` (one :class:`optbench.kernels.Rule`)
or ``RULES`` (a list of them), e.g. ``signum.py``::

    from optbench.kernels import Rule

    RULE = Rule(name="signum", title="Signum", hyper={"lr": 1e-3, "gamma": 0.9},
                ranges={"lr": "(0, inf)", "gamma": "[0, 1)"}, symbols={"eta": "lr", "gamma": "gamma"},
                state=("mu",), bytes_per_param=20,
                scalars=lambda hp, t: {"lr": hp["lr"], "gamma": hp["gamma"], "one_minus_gamma": 1 - hp["gamma"]},
                update='''
                    mu = gamma * mu + one_minus_gamma * g
                    w = w - lr * sign(mu)
                ''')

It is loaded three ways, all ending in :func:`optbench.kernels.rules.register`:

* ``--rules FILE.py`` on ``optbench run``, ``validate``, ``bench`` and ``rules``
  (:func:`load_file`);
* a study's top-level key ``rules = ["signum.py"]``, relative to the study
  file;
* an installed package's entry point in the group ``optbench.rules``, whose
  object is a Rule, a list of Rules or a module defining RULE / RULES
  (:func:`optbench.kernels.rules.load_entry_points`, on the first unknown
  rule name).

A registered plug-in gets what a built-in gets: generated NumPy, CUDA and
Numba kernels, the L2, masked and population forms, ``optbench validate``,
bench, studies and reports. Validation compares it with its own float64
``reference`` when the Rule gives one, otherwise with a float64 evaluation of
its own update text -- which checks the float32 backends and their precision,
not the maths.

Before registering, each rule takes :func:`trial_step`: two steps of a
two-member population over a small model's tensors, as ``optbench run``
would take it; a rule that fails there (a ``scalars`` that raises, a
per-tensor step that cannot run) is refused at load, in one line naming
the file, the rule and the reason.

A file that cannot be loaded is a :class:`PluginError` that names the file
and the line: a Python syntax error, anything the file raises while loading
(``sys.exit()`` and ``KeyboardInterrupt`` too), an update line that does not
parse or uses an unknown name or an undeclared state (the line of the
``Rule(...)`` call and the update's own line), a name that clashes with
another rule, or a name optbench gives a buffer or scalar of its own
(:data:`~optbench.kernels.rule.RESERVED_BUFFERS`,
:data:`~optbench.kernels.rule.RESERVED_SCALARS`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path

import numpy as np

from .flat import FlatLayout
from .population import PopulationOptimizer
from .rule import Rule, RuleError
from .rules import PLAIN, PluginError, load_entry_points, register, rules_of, with_l2_forms  # noqa: F401

#: Resolved path -> the rules it registered (a file loads once per process).
_LOADED: dict[Path, list[Rule]] = {}
#: Rule name -> the content hash of the file it was loaded from.
_FINGERPRINTS: dict[str, str] = {}


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The line of ``path`` where ``exc`` was raised (the innermost frame in it)."""
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        return exc.lineno
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return lines[-1] if lines else None


def load_file(path) -> list[Rule]:
    """Execute plug-in file ``path``, register the rules it defines and return
    them (as registered, with the L2 forms). Loading a file twice is a no-op."""
    path = Path(path).expanduser().resolve()
    if path in _LOADED:
        return _LOADED[path]
    if not path.is_file():
        raise PluginError(f"rules file {str(path)!r} not found")
    if path.suffix != ".py":
        raise PluginError(f"rules file {str(path)!r} must be a Python file (.py)")
    # A unique module name per file content: two plug-ins may share a file name.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    name = f"optbench_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a Rule's scalars may refer to the module's globals
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise PluginError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except BaseException as exc:  # a RuleError from Rule(...), any error of the user's code, even sys.exit()
        del sys.modules[name]
        line = _line_in(path, exc)
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            what = f"sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else "KeyboardInterrupt"
            raise PluginError(f"{path}{f':{line}' if line else ''}: the rules file raised {what} while loading; "
                              "a rules file defines RULE or RULES and must not exit") from None
        kind = "" if isinstance(exc, RuleError) else f"{type(exc).__name__}: "
        raise PluginError(f"{path}{f':{line}' if line else ''}: {kind}{exc}") from None
    found = rules_of(module, str(path))
    for r in found:
        try:
            r.check_own_names()
        except RuleError as exc:
            raise PluginError(f"{path}: {exc}") from None
        trial_step(r, path)
    try:
        rules = [register(r, str(path)) for r in found]
    except PluginError:
        raise
    except RuleError as exc:  # a bad or taken name: a plug-in's error like any other
        raise PluginError(str(exc)) from None
    _LOADED[path] = rules
    _FINGERPRINTS.update({r.name: digest for r in rules})
    return rules


#: The trial's model: three weight matrices (Muon's first, hidden and last)
#: with their biases and a PReLU alpha, padding between them, as a run has.
TRIAL_LAYOUT = FlatLayout([("W1", (3, 4)), ("b1", (4,)), ("alpha1", (1,)), ("W2", (4, 3)), ("b2", (3,)),
                           ("W3", (3, 2)), ("b3", (2,))])


def trial_step(rule: Rule, path) -> None:
    """What ``optbench run`` does with ``rule``, in small: two steps of a
    two-member population over :data:`TRIAL_LAYOUT` (members with different
    learning rates, one with decoupled decay) on NumPy, whose parameters must
    stay finite. A PluginError naming the file, the rule and the reason if
    it fails: a plug-in that validates but cannot train is refused at load,
    not in the middle of a study."""
    try:
        registered = with_l2_forms(rule)
        hypers = [{}, {"lr": rule.hyper["lr"] * 0.5} if "lr" in rule.hyper else {}]
        if "wd" in registered.hyper:
            hypers[1]["wd"] = 0.01
        rng = np.random.default_rng(0)
        inside = np.zeros(TRIAL_LAYOUT.size, bool)
        for slot in TRIAL_LAYOUT:
            inside[slot.offset : slot.offset + slot.size] = True
        params = (rng.standard_normal((2, TRIAL_LAYOUT.size)) * 0.5 * inside).astype(np.float32)
        pop = PopulationOptimizer(params, [registered] * 2, hypers, backend="numpy", layout=TRIAL_LAYOUT)
        with np.errstate(all="ignore"):  # a non-finite result is reported below, not warned about
            for _ in range(2):
                pop.step((rng.standard_normal(params.shape) * inside).astype(np.float32))
        bad = not np.isfinite(pop.weights()).all()
    except Exception as exc:  # whatever the user's scalars or text raise
        raise PluginError(f"{path}: rule {rule.name!r} fails a trial step of a two-member population, as "
                          f"optbench run would take it: {type(exc).__name__}: {exc}") from None
    if bad:
        raise PluginError(f"{path}: rule {rule.name!r} gives non-finite weights in two trial steps of a "
                          "two-member population at its default hyper-parameters")


def fingerprint(name: str) -> str | None:
    """A plug-in rule's content hash (None for a built-in): of its file as it
    was loaded, or for an entry point of its definition. A study keys a
    plug-in's cells by it, so an edited rule trains anew instead of keeping
    results of the old maths."""
    if name not in PLAIN:
        return None
    if name in _FINGERPRINTS:
        return _FINGERPRINTS[name]
    rule = PLAIN[name]
    text = repr((rule.update, sorted(rule.hyper.items()), rule.state, rule.scalar_names, rule.lookahead))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_files(paths) -> list[Rule]:
    """:func:`load_file` for each of ``paths`` (None or empty: nothing)."""
    return [r for p in (paths or ()) for r in load_file(p)]
