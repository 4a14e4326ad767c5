"""The registry split by how a rule compiles (tests/ is on sys.path: ``from rule_sets import ...``).

Most tests of the code generators launch a rule's one kernel by hand; they
run over ``ELEMENTWISE``, the rules whose text compiles to that one kernel.
The rules that reduce over views, carry scalars, keep row/column state or
take matrix steps (``STAGED``) run as several passes, which
tests/kernels/test_staged.py checks on every backend.
"""

from optbench.kernels import RULES
from optbench.kernels.rule import GLOBAL_REDUCTIONS
from optbench.kernels.stages import plan_of

ELEMENTWISE = {name: rule for name, rule in RULES.items() if plan_of(rule).simple}
STAGED = {name: rule for name, rule in RULES.items() if not plan_of(rule).simple}
#: Rules with a reduction over the whole run (Prodigy's d): every tensor's
#: step depends on every other tensor, so one tensor's settings move them all.
WHOLE_RUN = {name: rule for name, rule in RULES.items()
             if any(v.op in GLOBAL_REDUCTIONS for v in plan_of(rule).values.values())}
