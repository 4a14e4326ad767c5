"""optbench kernels: optimiser updates and dropout on flat float32 buffers.

Device code and its oracles only. Nothing here knows about models, data sets
or reports (that is ``suite``; ``kernels`` never imports it):

- ``rule`` and ``rules/``: the update rules, one module of maths each;
  ``transforms``: coupled L2, decoupled decay and masking as transforms of a rule;
- ``codegen/``: each rule compiled for NumPy, CUDA and Numba;
- ``optimizer``: a rule bound to a flat buffer (``flat``) on a ``backend``;
  ``population``: P runs' rules over the rows of one (P, n) buffer, one launch per rule;
- ``dropout`` and ``philox``: counter-based dropout; ``cuda/``: its CUDA source;
- ``reference`` and ``validate``: the float64 oracle and the checks against it.
"""

from . import dropout
from .backend import Backend, BackendUnavailable, get_backend
from .flat import FlatBuffer, FlatLayout
from .optimizer import NonFiniteGradient, Optimizer
from .population import PopulationOptimizer
from .rule import Rule, RuleError
from .rules import RULES, UnknownRuleError, get_rule

__all__ = [
    "dropout", "Backend", "BackendUnavailable", "get_backend", "FlatBuffer", "FlatLayout",
    "NonFiniteGradient", "Optimizer", "PopulationOptimizer", "Rule", "RuleError", "RULES", "UnknownRuleError", "get_rule",
]
