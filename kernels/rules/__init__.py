"""The registry of update rules: one module per rule (its maths only), one row here.

Every registered rule gets both L2 forms from :mod:`kernels.transforms`:
``coupled_l2`` (``l2``) and ``decoupled_decay`` (``wd``), both 0 by default.
"""

from ..rule import Rule, RuleError
from ..transforms import coupled_l2, decoupled_decay
from . import adadelta, adam, momentum, nesterov, rmsprop, sgd

RULES: dict[str, Rule] = {
    m.RULE.name: coupled_l2(decoupled_decay(m.RULE))
    for m in (sgd, momentum, nesterov, rmsprop, adadelta, adam)
}


class UnknownRuleError(RuleError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def get_rule(name: str) -> Rule:
    """The rule called ``name``; an unknown name lists the allowed ones."""
    try:
        return RULES[name]
    except (KeyError, TypeError):
        raise UnknownRuleError(
            f"unknown optimiser {name!r}; allowed: {', '.join(RULES)}"
        ) from None
