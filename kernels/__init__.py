"""optbench kernels: optimiser updates and dropout on flat float32 buffers.

Device code and its oracles only: backends, flat buffers, the update rules
(each written once, compiled for NumPy and CUDA), and the float64 reference.
Nothing here knows about models, data sets or reports (that is ``suite``).
"""

from . import dropout
from .backend import Backend, BackendUnavailable, get_backend
from .flat import FlatBuffer, FlatLayout
from .optimizer import Optimizer
from .rule import Rule, RuleError
from .rules import RULES, UnknownRuleError, get_rule

__all__ = [
    "dropout", "Backend", "BackendUnavailable", "get_backend", "FlatBuffer", "FlatLayout",
    "Optimizer", "Rule", "RuleError", "RULES", "UnknownRuleError", "get_rule",
]
