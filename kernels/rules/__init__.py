"""The registry of update rules: one module per built-in rule (its maths and
what it says about itself), found by listing this package, and the plug-in
rules registered at run time.

Every registered rule gets both L2 forms from :mod:`optbench.kernels.transforms`:
``coupled_l2`` (``l2``) and ``decoupled_decay`` (``wd``), both 0 by default
(a rule that decays the weights itself, ``Rule.decoupled`` False, defines
its own ``wd``).

A built-in rule is a module here that defines ``RULE``; adding one is that
module, its float64 reference (:mod:`optbench.kernels.reference`) and its row
in the tests' table. The lecture's six come first, in the lecture's order
(``Rule.lecture``), then the rest by the year of their paper.

Plug-in rules (:mod:`optbench.kernels.plugins`: a user's file, a study's
``rules`` key, or an installed package's ``optbench.rules`` entry point,
loaded here on the first unknown name) are added by :func:`register` and then
get everything a built-in gets: kernels for every backend, masked and
population forms, validation, bench, studies and reports.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from importlib.metadata import entry_points

from ..rule import SOURCES, Rule, RuleError
from ..transforms import coupled_l2, decoupled_decay

ENTRY_POINT_GROUP = "optbench.rules"


class PluginError(RuleError):
    """A plug-in file or entry point that cannot give valid rules."""


class UnknownRuleError(RuleError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def _builtin() -> list[Rule]:
    modules = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    rules = [m.RULE for m in modules]
    return sorted(rules, key=lambda r: (r.lecture is None, r.lecture or r.year or 9999, r.name))


_BUILTIN = _builtin()
#: The built-in rules in the order tables and figures list them.
BUILTIN = tuple(r.name for r in _BUILTIN)
#: The lecture's rules (the rest are beyond the lecture).
LECTURE = tuple(r.name for r in _BUILTIN if r.lecture is not None)

def with_l2_forms(rule: Rule) -> Rule:
    """``rule`` with coupled L2 (``l2``) and, unless it decays the weights
    itself (``Rule.decoupled`` False), decoupled decay (``wd``)."""
    return coupled_l2(decoupled_decay(rule) if rule.decoupled else rule)


for _rule in _BUILTIN:
    _rule.check_own_names()
RULES: dict[str, Rule] = {r.name: with_l2_forms(r) for r in _BUILTIN}
# SOURCES (from .rule): plug-in rule name -> where it came from (a file path or an entry point).
#: Plug-in rule name -> the rule as its author wrote it (before the L2 transforms).
PLAIN: dict[str, Rule] = {}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ENTRY_POINTS_LOADED = False


def register(rule: Rule, source: str) -> Rule:
    """Add plug-in ``rule`` (from ``source``) to :data:`RULES`, with both
    L2 forms, and return the registered rule. Registering the same rule
    object again is a no-op; another rule under a taken name is a RuleError."""
    if not isinstance(rule, Rule):
        raise RuleError(f"{source}: expected an optbench.kernels.Rule, got {type(rule).__name__}")
    if not _NAME.match(rule.name):
        raise RuleError(f"{source}: rule name {rule.name!r} must be lower-case letters, digits and _ "
                        "(it names kernels and files), starting with a letter")
    if PLAIN.get(rule.name) is rule:
        return RULES[rule.name]
    if rule.name in RULES:
        where = "a built-in rule" if rule.name in BUILTIN else f"the plug-in from {SOURCES[rule.name]}"
        raise RuleError(f"{source}: rule {rule.name!r} is already {where}; give yours another name")
    try:
        rule.check_own_names()
    except RuleError as exc:
        raise RuleError(f"{source}: {exc}") from None
    registered = with_l2_forms(rule)
    RULES[rule.name], SOURCES[rule.name], PLAIN[rule.name] = registered, source, rule
    return registered


def rules_of(obj, where: str) -> list[Rule]:
    """The rules an entry point's or a module's object holds: a Rule, a list
    of them, or a module defining RULE / RULES."""
    if isinstance(obj, Rule):
        return [obj]
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(r, Rule) for r in obj):
        return list(obj)
    found = [getattr(obj, name) for name in ("RULE", "RULES") if hasattr(obj, name)]
    if not found:
        raise PluginError(f"{where} defines neither RULE (an optbench.kernels.Rule) nor RULES (a list of them)")
    rules = []
    for value in found:
        rules += [value] if isinstance(value, Rule) else list(value) if isinstance(value, (list, tuple)) else [None]
    if not rules or not all(isinstance(r, Rule) for r in rules):
        raise PluginError(f"{where}: RULE must be an optbench.kernels.Rule and RULES a non-empty list of them")
    return rules


def load_entry_points() -> list[Rule]:
    """Register the rules of every installed package's ``optbench.rules``
    entry point (once per process); returns the rules registered now."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return []
    _ENTRY_POINTS_LOADED = True
    rules = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {ep.name!r} ({ep.value})"
        try:
            obj = ep.load()
        except BaseException as exc:  # whatever the package's import raises, sys.exit() included
            raise PluginError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from None
        try:
            rules += [register(r, where) for r in rules_of(obj, where)]
        except PluginError:
            raise
        except RuleError as exc:
            raise PluginError(str(exc)) from None
    return rules


def get_rule(name: str) -> Rule:
    """The rule called ``name``; an unknown name lists the allowed ones.
    Installed plug-ins (entry points) are loaded on the first miss."""
    try:
        return RULES[name]
    except (KeyError, TypeError):
        if isinstance(name, str) and load_entry_points() and name in RULES:
            return RULES[name]
        raise UnknownRuleError(
            f"unknown optimiser {name!r}; allowed: {', '.join(RULES)}"
            + ("" if SOURCES else " (a rule of your own: --rules FILE.py, or rules = [...] in a study)")
        ) from None
