"""The registry of update rules: one module per built-in rule (its maths only),
one row here, and the plug-in rules registered at run time.

Every registered rule gets both L2 forms from :mod:`kernels.transforms`:
``coupled_l2`` (``l2``) and ``decoupled_decay`` (``wd``), both 0 by default.

The first six are the lecture's (section 12); the next six are the common
rules beyond it. Plug-in rules (:mod:`kernels.plugins`: a user's file, a
study's ``rules`` key, or an installed package's ``optbench.rules`` entry
point) are added by :func:`register` and then get everything a built-in
gets: kernels for every backend, masked and population forms, validation,
bench, studies and reports.
"""

from __future__ import annotations

import re

from ..rule import Rule, RuleError
from ..transforms import coupled_l2, decoupled_decay
from . import adabelief, adadelta, adagrad, adam, adamax, amsgrad, lion, momentum, nadam, nesterov, rmsprop, sgd

#: The built-in rules in the order tables and figures list them.
_MODULES = (sgd, momentum, nesterov, rmsprop, adadelta, adam, adagrad, adamax, nadam, amsgrad, lion, adabelief)
BUILTIN = tuple(m.RULE.name for m in _MODULES)
#: The lecture's rules (the rest are beyond the lecture).
LECTURE = BUILTIN[:6]

RULES: dict[str, Rule] = {m.RULE.name: coupled_l2(decoupled_decay(m.RULE)) for m in _MODULES}
#: name -> the update in the lecture's symbols (a plug-in's module may give FORMULA too).
FORMULAS: dict[str, str] = {m.RULE.name: m.FORMULA for m in _MODULES}
#: name -> the exact torch.optim equivalent, or why there is none.
TORCH: dict[str, str] = {m.RULE.name: m.TORCH for m in _MODULES}
#: Plug-in rule name -> where it came from (a file path or an entry point).
SOURCES: dict[str, str] = {}
#: Plug-in rule name -> the rule as its author wrote it (before the L2 transforms).
PLAIN: dict[str, Rule] = {}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class UnknownRuleError(RuleError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def register(rule: Rule, source: str, formula: str = "") -> Rule:
    """Add plug-in ``rule`` (from ``source``; ``formula``: its update in the
    lecture's symbols, if its author wrote one) to :data:`RULES`, with both
    L2 forms, and return the registered rule. Registering the same rule
    object again is a no-op; another rule under a taken name is a RuleError."""
    if not isinstance(rule, Rule):
        raise RuleError(f"{source}: expected a kernels.Rule, got {type(rule).__name__}")
    if not _NAME.match(rule.name):
        raise RuleError(f"{source}: rule name {rule.name!r} must be lower-case letters, digits and _ "
                        "(it names kernels and files), starting with a letter")
    if PLAIN.get(rule.name) is rule:
        return RULES[rule.name]
    if rule.name in RULES:
        where = "a built-in rule" if rule.name in BUILTIN else f"the plug-in from {SOURCES[rule.name]}"
        raise RuleError(f"{source}: rule {rule.name!r} is already {where}; give yours another name")
    registered = coupled_l2(decoupled_decay(rule))
    RULES[rule.name], SOURCES[rule.name], PLAIN[rule.name] = registered, source, rule
    if formula:
        FORMULAS[rule.name] = formula
    return registered


def get_rule(name: str) -> Rule:
    """The rule called ``name``; an unknown name lists the allowed ones.
    Installed plug-ins (entry points) are loaded on the first miss."""
    try:
        return RULES[name]
    except (KeyError, TypeError):
        from ..plugins import load_entry_points

        if isinstance(name, str) and load_entry_points() and name in RULES:
            return RULES[name]
        raise UnknownRuleError(
            f"unknown optimiser {name!r}; allowed: {', '.join(RULES)}"
            + ("" if SOURCES else " (a rule of your own: --rules FILE.py, or rules = [...] in a study)")
        ) from None
