"""A rule's counterpart in a library users trust, written once as data.

A :class:`Peer` says how to build the peer library's optimiser that computes
the same update as a rule, from the rule's resolved hyper-parameters, and
how the two optimisers' states correspond. The conformance tests run both
side by side and compare parameters and state after every step; ``optbench
bench`` times the peer beside the rule; the README's list of equivalents is
each rule's ``peer_note``. Nothing here imports the peer library: it is an
optional extra (``pip install 'optbench[compare]'``).

``make(hp)`` returns ``(class name, keyword arguments)`` for the rule's
resolved hyper-parameters ``hp`` (``lr``, ``l2``, ``wd`` included), or None
where the peer has no exact form for them (e.g. plain SGD with decoupled
decay). ``state`` maps a state buffer of ours to the peer's state key and
the factor between them (ours = factor x theirs; a number, or a function of
``hp``). ``params``: "w" where the peer's parameters are our weights, or
"stored" where they are what our parameter buffer stores (Nesterov's
look-ahead point). ``exact`` False marks a stand-in with the same memory
traffic but not the same rule, used only to time it (torch's Adadelta for
ours).

A rule that works per tensor is compared on a model of several tensors,
one peer parameter per view of our buffer (a weight matrix as the peer's
Linear stores it: (fan_out, fan_in), our view transposed). ``groups`` turns
those parameters -- with whether each is a matrix to the rule -- into the
peer's ``params`` argument where it needs parameter groups (Muon's
``use_muon``); ``setup`` names a method the peer needs called before its
first step (schedule-free's ``train``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping


@dataclass(frozen=True)
class Peer:
    library: str                                     # the module to import, e.g. "torch.optim"
    make: Callable[[Mapping[str, float]], tuple[str, dict] | None]
    state: Mapping[str, tuple[str, float | Callable]] = field(default_factory=dict)
    params: str = "w"                                # "w", or "stored" (the rule's stored point)
    exact: bool = True
    #: (parameters with their matrix flags, hp) -> the peer's params argument (parameter groups).
    groups: Callable | None = None
    setup: str | None = None

    def build(self, params, hp: Mapping[str, float], matrices=None, **extra):
        """The peer's optimiser over ``params`` for our hyper-parameters ``hp``
        (``matrices``: whether each parameter is a matrix to the rule, for
        ``groups``; ``extra``: the peer's own options, e.g. foreach=True);
        None where it has no exact form for them. Imports the library."""
        made = self.make(hp)
        if made is None:
            return None
        name, kwargs = made
        module = __import__(self.library, fromlist=[name])
        params = list(params)
        if self.groups is not None:
            params = self.groups(list(zip(params, matrices or [False] * len(params))), hp)
        optimizer = getattr(module, name)(params, **{**kwargs, **extra})  # extra overrides
        if self.setup:
            getattr(optimizer, self.setup)()
        return optimizer

    def factor(self, ours: str, hp: Mapping[str, float]) -> float:
        """ours = factor x theirs for state buffer ``ours``."""
        f = self.state[ours][1]
        return float(f(hp) if callable(f) else f)
