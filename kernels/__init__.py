"""optbench kernels: optimiser updates and dropout on flat float32 buffers.

Device code and its oracles only. Nothing here knows about models, data sets
or reports (that is ``optbench.suite``; ``optbench.kernels`` never imports it):

- ``rule`` and ``rules/``: the update rules, one module each (its maths, and
  what it says about itself: formula, tuning centre, peer library mapping,
  ``peer``); ``transforms``: coupled L2, decoupled decay and masking as
  transforms of a rule;
- ``codegen/``: each rule compiled for NumPy, CUDA and Numba; ``launch``:
  which compiled kernel updates which arrays;
- ``population``: the binding -- P runs' rules over the rows of one (P, n)
  buffer, one launch per rule; ``optimizer``: a single run, the population
  of one, over a flat buffer (``flat``) on a ``backend``;
- ``dropout`` and ``philox``: counter-based dropout; ``steps``: the
  device-side step account; ``cuda/`` and ``sources``: their CUDA source;
- ``reference`` and ``validate``: the float64 oracle and the checks against it;
- ``testing``: the CuPy stand-in and the host harness for CUDA source.
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
