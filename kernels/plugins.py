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

A file that cannot be loaded is a :class:`PluginError` that names the file
and the line: a Python syntax error, an update line that does not parse or
uses an unknown name or an undeclared state (the line of the ``Rule(...)``
call and the update's own line), a name that clashes with another rule.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path

from .rule import Rule, RuleError
from .rules import PLAIN, PluginError, load_entry_points, register, rules_of  # noqa: F401 (re-exported)

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
    except Exception as exc:  # a RuleError from Rule(...), or any error of the user's code
        del sys.modules[name]
        line = _line_in(path, exc)
        kind = "" if isinstance(exc, RuleError) else f"{type(exc).__name__}: "
        raise PluginError(f"{path}{f':{line}' if line else ''}: {kind}{exc}") from None
    found = rules_of(module, str(path))
    try:
        rules = [register(r, str(path)) for r in found]
    except PluginError:
        raise
    except RuleError as exc:  # a bad or taken name: a plug-in's error like any other
        raise PluginError(str(exc)) from None
    _LOADED[path] = rules
    _FINGERPRINTS.update({r.name: digest for r in rules})
    return rules


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
