"""A population: P independent training runs ("members") updated together,
one kernel launch per rule per step.

Member m's whole flat parameter buffer is row m of one (P, n) float32
C-contiguous array, its gradient row m of a (P, n) array of the same shape,
and each of its rule's state buffers one row of a (P_r, n) array per rule.
The members of one rule ("a group") occupy one contiguous range of rows
[lo, hi) -- the caller sorts the population by rule -- so a step is one launch
per group over its rows, whatever P is (:mod:`kernels.codegen`: the CUDA
population kernels, the NumPy program on tiles of rows, the Numba loop over
members).

Every member has its own hyper-parameters, resolved and range-checked as
:class:`kernels.Optimizer` does. A step's scalars are computed on the host in
double for all members of a group at once -- the rule's ``scalars`` applied to
arrays of the members' values (:func:`hyper_values`, :func:`scalar_table`) --
rounded once to float32 and passed as a (P_r, k) table, a row per member. The
kernels run the same float32 operations on the same values as a single run,
so member m's row is bit for bit what a single-run Optimizer with its
hyper-parameters makes of its row from the same gradients on the same backend.
(A rule's ``scalars`` must therefore apply to arrays: arithmetic and ``**``,
as every built-in rule's are; ``math`` functions would not.)

Each member may have its own learning-rate schedule (:mod:`kernels.schedules`).
Step t's factor is computed for each member by the same
:meth:`~kernels.schedules.Schedule.factor` a single run calls, in Python
floats (once per distinct schedule), and multiplies the member's lr in
double (NumPy's float64 multiply rounds as Python's does) before the rule's
``scalars`` see it: the tables stay bit for bit the single runs'.
A member may also have a decay mask (``decay_masks``: where its L2 and
decoupled decay apply, :func:`kernels.transforms.decay_masked`).

The step counter ``t`` is shared. ``step(grads, active)`` takes an optional
(P,) int32 flag array on the parameters' device (``kernels.steps.StepAccount.active``):
a member whose flag is 0 is skipped -- its rows are neither read nor written --
and, as for a single run's ``step(active=)``, ``t`` counts the step anyway.

On a GPU a step neither reads anything back nor copies anything to the
device: :meth:`PopulationOptimizer.begin_epoch` computes the next steps'
scalar tables (steps, P_r, k) on the host and uploads them all in one copy,
and each step passes its row of the table (a device view) to the kernel. A
step past the prepared ones computes and uploads its own table (one copy).

One member alone: :meth:`PopulationOptimizer.member` gives what a single-run
Optimizer offers for saving (``rule``, ``hyper``, ``t``, ``state``,
``weights()``, ``state_dict()`` in the Optimizer's format), so
``suite.nn.checkpoint.save_checkpoint(model, path, optimizer=population.member(m))``
saves member m, and an Optimizer over a copy of its row given
``load_state_dict(population.member_state_dict(m))`` continues it as a single
run, bit for bit.
"""

from __future__ import annotations

import operator
from typing import Mapping, Sequence

import numpy as np

from .backend import array_kind, array_module
from .codegen.expr import evaluate
from .optimizer import Optimizer, _kernel_backend, aligned_zeros, check_flag, kernel_for
from .rule import Rule, RuleError, parse_expression
from .rules import get_rule
from .schedules import Schedule, as_schedule, check_bound
from .transforms import decay_masked, masked

_POW = np.frompyfunc(operator.pow, 2, 1)


class _Values(np.ndarray):
    """Hyper-parameter values of a group's members (float64, one per member),
    for a rule's ``scalars`` to compute every member's scalars at once.

    + - * / are NumPy's, which round exactly as Python's float operations
    do. ``**`` is Python's float power, element by element: NumPy's own
    (vectorised; SVML where the CPU has AVX-512) differs from the C library's
    ``pow`` that a single run's Python floats call in the last bit of about
    5% of values (gamma ** t, measured here), and such a bit can round a
    float32 scalar the other way -- the member would then not be bit for bit
    its single run.
    """

    def __pow__(self, other):
        return _POW(self, other).astype(np.float64).view(_Values)

    def __rpow__(self, other):
        return _POW(other, self).astype(np.float64).view(_Values)


def hyper_values(rule: Rule, hypers: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
    """Each hyper-parameter of ``rule`` over the members (resolved dicts), as
    the float64 arrays :func:`scalar_table` hands to the rule's ``scalars``."""
    return {key: np.array([float(h[key]) for h in hypers], dtype=np.float64).view(_Values) for key in rule.hyper}


def lr_factors(schedules: Sequence[Schedule | None] | None, first: int, steps: int) -> np.ndarray | None:
    """(steps, P_r) float64: [i, m] is member m's schedule factor at step
    ``first + i`` (1.0 for a member without a schedule), each the Python
    float its :meth:`Schedule.factor` returns; None when no member has a
    schedule. Computed once per distinct schedule."""
    if schedules is None or all(s is None or s.is_constant for s in schedules):
        return None
    out = np.ones((steps, len(schedules)), dtype=np.float64)
    members: dict[Schedule, list[int]] = {}
    for m, s in enumerate(schedules):
        if s is not None and not s.is_constant:
            members.setdefault(s, []).append(m)
    for s, rows in members.items():
        out[:, rows] = np.array([s.factor(first + i) for i in range(steps)], dtype=np.float64)[:, None]
    return out


def _with_lr(values: Mapping[str, np.ndarray], factors: np.ndarray | None) -> Mapping[str, np.ndarray]:
    """``values`` with each member's lr x its factor (float64, as a single
    run's Python float product); ``values`` itself when factors is None."""
    if factors is None:
        return values
    return {**values, "lr": np.multiply(values["lr"], factors).view(_Values)}


def scalar_table(rule: Rule, values: Mapping[str, np.ndarray], first: int, steps: int,
                 schedules: Sequence[Schedule | None] | None = None) -> np.ndarray:
    """(steps, P_r, k) float32: [i, m] is member m's scalars for step
    ``first + i`` in ``rule.scalar_names`` order, computed in double from
    ``values`` (:func:`hyper_values`) and rounded once to float32 -- each
    exactly ``np.float32(rule.step_scalars(member's hyper, t)[name])``, where
    with ``schedules`` (one per member, None for constant) the member's hyper
    has lr x factor(t), as a single-run Optimizer with that schedule uses."""
    if first < 1:
        raise RuleError(f"step counter t starts at 1, got {first}")
    names = rule.scalar_names
    members = len(next(iter(values.values())))
    factors = lr_factors(schedules, first, steps)
    out = np.empty((steps, members, len(names)), dtype=np.float32)
    for i in range(steps):
        scalars = rule.scalars(values if factors is None else _with_lr(values, factors[i]), first + i)
        for j, name in enumerate(names):
            out[i, :, j] = scalars[name]  # broadcasts a value that is the same for all
    return out


def _check_rows(name: str, a, shape: tuple | None = None, kind: str | None = None) -> None:
    """A clear error unless ``a`` is a (members, n) C-contiguous float32 array
    (of ``shape``, of array kind ``kind``)."""
    found = array_kind(a)
    if kind is not None and found != kind:
        raise TypeError(f"buffer {name!r} is a {found} array but the parameters are {kind}")
    if a.dtype != np.float32:
        raise TypeError(f"buffer {name!r} must be float32, got {a.dtype}")
    if a.ndim != 2 or not a.flags.c_contiguous:
        raise ValueError(f"buffer {name!r} must be a 2-D C-contiguous (members, n) array, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"buffer {name!r} has shape {a.shape} but the parameters have {shape}")


class RuleGroup:
    """The members of one rule: rows [lo, hi) of the population.

    values: each hyper-parameter over the members (:func:`hyper_values`);
    schedules: each member's learning-rate schedule (None: constant), or
        None when no member has one;
    state: each state buffer of the rule, (hi - lo, n), zero at the start;
    table: the prepared steps' scalars, (steps, hi - lo, k) on the device.
    """

    def __init__(self, rule: Rule, lo: int, hi: int, hypers, state: dict, kernel, schedules=None):
        self.rule, self.lo, self.hi = rule, lo, hi
        self.values = hyper_values(rule, hypers)
        self.schedules = None if lr_factors(schedules, 1, 1) is None else tuple(schedules)
        self.state = state
        self.kernel = kernel
        self.table = None
        self._offset = None  # the look-ahead offset's expression and scalar columns, when first asked

    @property
    def rows(self) -> slice:
        return slice(self.lo, self.hi)

    def table_for(self, first: int, steps: int) -> np.ndarray:
        """The host scalar table of steps first .. first + steps - 1 (:func:`scalar_table`)."""
        return scalar_table(self.rule, self.values, first, steps, self.schedules)

    def lookahead_offset(self, xp, t: int = 1):
        """w - params of every member, (hi - lo, n), for a rule with a
        look-ahead: its expression with each member's step-1 scalars as
        (hi - lo, 1) float32 columns (as ``Rule.weights`` takes them) -- with
        a schedule, from the lr of step ``t`` (the last step taken), as a
        single-run Optimizer's ``weights()``."""
        key = 1 if self.schedules is None else max(int(t), 1)
        if self._offset is None or self._offset[0] != key:
            names = self.rule.scalar_names
            expr = parse_expression(self.rule, self.rule.lookahead, set(names) | set(self.state))
            values = _with_lr(self.values, None if self.schedules is None else lr_factors(self.schedules, key, 1)[0])
            table = xp.asarray(scalar_table(self.rule, values, 1, 1)[0])  # uploaded once (per step under a schedule)
            self._offset = key, expr, {s: table[:, j : j + 1] for j, s in enumerate(names)}
        _, expr, columns = self._offset
        return evaluate(expr, {**columns, **self.state})


class Member:
    """Member m of a population, as a single-run :class:`kernels.Optimizer`
    presents itself for saving: ``rule``, ``hyper``, ``t``, ``params`` (its
    row), ``state`` (its rows), ``weights()`` and ``state_dict()``. Views into
    the population's buffers, so they follow its later steps."""

    # The single-run Optimizer's own methods: the same format by construction.
    weights = Optimizer.weights
    state_dict = Optimizer.state_dict

    def __init__(self, population: "PopulationOptimizer", m: int):
        group = population.group_of(m)
        self.population, self.index = population, m
        self.rule = group.rule
        self.hyper = dict(population.hypers[m])
        self.schedule = population.schedules[m]
        self.params = population.params[m]
        self.state = {k: v[m - group.lo] for k, v in group.state.items()}

    @property
    def t(self) -> int:
        return self.population.t


class PopulationOptimizer:
    """P members' update rules over the rows of one (P, n) parameter array.

    params: (P, n) float32 C-contiguous, NumPy or CuPy; row m is member m's
        flat parameter buffer;
    rules: P rule names or :class:`Rule` objects, one per member; the
        members of one rule must occupy one contiguous range of rows;
    hypers: P dicts of hyper-parameters (None or {} for the defaults);
    backend: whose kernels run the update, as for :class:`kernels.Optimizer`;
    masks: optionally (P, n) float32 0/1 on the parameters' device: each
        member's parameters and state are held at exactly 0 where its mask
        is 0 (the masked rules of :func:`kernels.transforms.masked`); the
        parameters under a 0 are zeroed now;
    schedules: optionally P learning-rate schedules, one per member (None
        or a constant one: none; see :class:`kernels.Optimizer`'s
        ``schedule``); members of one rule may differ in schedule;
    decay_masks: optionally (P, n) float32 on the parameters' device: row
        m is 1.0 where member m's L2 and decoupled decay apply and 0.0 where
        they do not (:func:`kernels.transforms.decay_masked`; a row of ones
        gives, bit for bit, the unmasked update).

    groups: one :class:`RuleGroup` per rule, in row order; t: steps taken.
    """

    # Why decay_masks is a (P, n) array rather than one (n,) row shared by
    # every member: the generated population kernels address every buffer of
    # a launch with the parameters' row stride (CUDA: p + member * ld, one
    # ld for all buffers; Numba: C-contiguous 2-D arrays), so a shared row
    # would need a stride-0 buffer they cannot take. The full array costs
    # what one more state buffer costs (4 bytes per parameter per member in
    # memory, and 4 more bytes read per parameter per step: SGD moves 12,
    # Adam 28) and, as
    # for the pruning ``masks``, lets each member have its own: a member
    # that decays everything has a row of ones, so the members of a rule
    # stay one group, one launch.
    def __init__(self, params, rules: Sequence, hypers: Sequence, backend=None, masks=None, schedules=None,
                 decay_masks=None):
        _check_rows("w", params)
        self.params = params
        members, n = params.shape
        if members == 0:
            raise ValueError("a population needs at least one member (params has 0 rows)")
        #: "numpy" or "cupy": the kind of array every buffer must be.
        self.arrays = array_kind(params)
        #: "numpy", "numba" or "cupy": whose kernels run the update.
        self.backend = _kernel_backend(self.arrays, backend)
        self.xp = array_module(params)
        rules, hypers = list(rules), list(hypers)
        if len(rules) != members or len(hypers) != members:
            raise ValueError(f"params has {members} members (rows) but {len(rules)} rules and "
                             f"{len(hypers)} hyper-parameter sets were given: one each per member")
        resolved_rules, resolved = [], []
        for m, (rule, hyper) in enumerate(zip(rules, hypers)):
            try:
                resolved_rules.append(rule if isinstance(rule, Rule) else get_rule(rule))
                resolved.append(resolved_rules[-1].resolve(hyper))
            except RuleError as exc:
                raise type(exc)(f"member {m}: {exc}") from None
        #: Each member's rule and resolved hyper-parameters.
        self.rules: tuple[Rule, ...] = tuple(resolved_rules)
        self.hypers: tuple[dict, ...] = tuple(resolved)
        if masks is not None:
            _check_rows("mask", masks, params.shape, self.arrays)
        self.masks = masks
        if decay_masks is not None:
            _check_rows("decay_mask", decay_masks, params.shape, self.arrays)
        self.decay_masks = decay_masks
        schedules = [None] * members if schedules is None else list(schedules)
        if len(schedules) != members:
            raise ValueError(f"params has {members} members (rows) but {len(schedules)} schedules were given: "
                             "one per member (None for a constant lr)")
        resolved_schedules = []
        for m, schedule in enumerate(schedules):
            try:
                resolved_schedules.append(as_schedule(schedule))
                check_bound(resolved_schedules[-1], f"member {m}")
            except ValueError as exc:
                raise type(exc)(f"member {m}: {exc}") from None
            if resolved_schedules[-1] is not None and "lr" not in self.rules[m].hyper:
                raise ValueError(f"member {m}: rule {self.rules[m].name!r} has no learning rate 'lr' "
                                 "for a schedule to scale")
        #: Each member's learning-rate schedule (None: constant).
        self.schedules: tuple[Schedule | None, ...] = tuple(resolved_schedules)
        self.groups: tuple[RuleGroup, ...] = tuple(
            self._group(rule, lo, hi) for rule, lo, hi in _contiguous_runs(self.rules))
        if masks is not None:
            params *= masks
        self._always = self.xp.ones(members, dtype=np.int32)  # the active flags when none are given
        self.t = 0
        self._first, self._steps = 1, 0  # steps first .. first + steps - 1 have tables

    def _group(self, rule: Rule, lo: int, hi: int) -> RuleGroup:
        n = self.params.shape[1]
        if self.arrays == "numpy":  # cache-line aligned, as a single run's state
            state = {s: aligned_zeros((hi - lo) * n).reshape(hi - lo, n) for s in rule.state}
        else:  # CuPy's allocations are 256-byte aligned already
            state = {s: self.xp.zeros((hi - lo, n), dtype=np.float32) for s in rule.state}
        kernel_rule = rule if self.decay_masks is None else decay_masked(rule)
        kernel = kernel_for(kernel_rule if self.masks is None else masked(kernel_rule), self.backend)
        return RuleGroup(rule, lo, hi, self.hypers[lo:hi], state, kernel, self.schedules[lo:hi])

    def group_of(self, m: int) -> RuleGroup:
        """The group that holds member ``m``."""
        for group in self.groups:
            if group.lo <= m < group.hi:
                return group
        raise IndexError(f"member {m} out of range: the population has {self.params.shape[0]} members")

    def begin_epoch(self, n_steps: int) -> None:
        """Compute the scalar tables of the next ``n_steps`` steps (t + 1 ..
        t + n_steps) for every group, and upload them in one copy on a GPU."""
        if n_steps < 1:
            raise ValueError(f"begin_epoch needs at least one step, got {n_steps}")
        self._prepare(self.t + 1, int(n_steps))

    def _prepare(self, first: int, steps: int) -> None:
        host = [g.table_for(first, steps) for g in self.groups]
        flat = np.concatenate([h.reshape(-1) for h in host])
        if self.arrays == "cupy":
            flat = self.xp.asarray(flat)  # the one host-to-device copy
        offset = 0
        for group, h in zip(self.groups, host):
            group.table = flat[offset : offset + h.size].reshape(h.shape)
            offset += h.size
        self._first, self._steps = first, steps

    def step(self, grads, active=None) -> None:
        """One update of every active member: w, state := rule(w, g, state),
        one launch per group. grads: (P, n) float32 like the parameters;
        active: None (all) or a (P,) int32 array on their device, 0 skipping
        a member. Reads nothing back; copies nothing to a GPU when
        :meth:`begin_epoch` prepared this step."""
        _check_rows("g", grads, self.params.shape, self.arrays)
        if active is None:
            active = self._always
        else:
            check_flag(active, self.arrays)
            if active.shape != (self.params.shape[0],) or not active.flags.c_contiguous:
                raise ValueError(f"the active flags must be a contiguous ({self.params.shape[0]},) array, "
                                 f"one per member; got shape {active.shape}")
        self.t += 1
        if not self._first <= self.t < self._first + self._steps:
            self._prepare(self.t, 1)
        i = self.t - self._first
        for group in self.groups:
            rows = group.rows
            buffers = {"w": self.params[rows], "g": grads[rows], **group.state}
            if self.masks is not None:
                buffers["mask"] = self.masks[rows]
            if self.decay_masks is not None:
                buffers["decay_mask"] = self.decay_masks[rows]
            group.kernel.population(buffers, group.table[i], active[rows])

    def weights(self):
        """The (P, n) weights to evaluate: the parameters themselves, or, when
        a group's rule keeps a look-ahead point (Nesterov), a new array with
        params + offset in that group's rows."""
        ahead = [g for g in self.groups if g.rule.lookahead is not None]
        if not ahead:
            return self.params
        w = self.params.copy()
        for group in ahead:
            self.xp.add(self.params[group.rows], group.lookahead_offset(self.xp, self.t), out=w[group.rows])
        return w

    def member(self, m: int) -> Member:
        """Member ``m`` on its own (views into the population's buffers)."""
        return Member(self, m)

    def member_state_dict(self, m: int) -> dict:
        """Member ``m``'s state in the format of ``Optimizer.state_dict()``."""
        return self.member(m).state_dict()


def _contiguous_runs(rules: Sequence[Rule]) -> list[tuple[Rule, int, int]]:
    """(rule, lo, hi) per run of equal rules; a ValueError if a rule's members
    are not one contiguous range of rows."""
    runs: list[tuple[Rule, int, int]] = []
    for m, rule in enumerate(rules):
        if runs and runs[-1][0] is rule:
            runs[-1] = (rule, runs[-1][1], m + 1)
            continue
        earlier = next((r for r in runs if r[0] is rule), None)
        if earlier is not None:
            raise ValueError(
                f"the members of rule {rule.name!r} must occupy one contiguous range of rows, but they are at "
                f"rows {earlier[1]}-{earlier[2] - 1} and {m}: sort the population by rule")
        runs.append((rule, m, m + 1))
    return runs
