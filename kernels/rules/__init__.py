"""The registry of update rules: one module per rule, one row here."""

from ..rule import Rule, RuleError
from . import adadelta, adam, momentum, nesterov, rmsprop, sgd

RULES: dict[str, Rule] = {
    m.RULE.name: m.RULE for m in (sgd, momentum, nesterov, rmsprop, adadelta, adam)
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
