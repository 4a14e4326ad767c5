"""The optimiser binding: P independent runs ("members") updated together,
one kernel launch per rule per step. A single run is a population of one
(:class:`optbench.kernels.Optimizer` is member 0 of one).

Member m's whole flat parameter buffer is row m of one (P, n) float32
C-contiguous array, its gradient row m of a (P, n) array of the same shape,
and each of its rule's state buffers one row of a (P_r, n) array per rule.
The members of one rule ("a group") occupy one contiguous range of rows
[lo, hi) -- the caller sorts the population by rule -- so a step is one launch
per group over its rows, whatever P is (:mod:`optbench.kernels.codegen`: the
CUDA population kernels, the NumPy program on tiles of rows, the Numba loop
over members).

Every member has its own hyper-parameters, resolved and range-checked by
the rule. A step's scalars (bias corrections, 1 - gamma, lr x the
schedule's factor, ...) are computed on the host in double by the rule's
``scalars(hp, t)`` with each member's hyper-parameters as plain Python
floats -- once per distinct (hyper-parameters, schedule) in the group, so a
population of seeds costs what one run costs -- rounded once to float32 and
passed as a (P_r, k) table, a row per member. So a rule's ``scalars`` is
ordinary Python (``math.sqrt``, an ``if``, a dict cache), and every member's
row is bit for bit what a run of its own would make of it, whatever else
trains beside it.

Each member may have its own learning-rate schedule (:mod:`optbench.kernels.schedules`):
step t's hyper-parameters are the member's with lr x factor(t), in double,
before its rule's ``scalars`` see them. A member may also have a pruning mask
(``masks``: its parameters and state held at exactly 0 where it is 0,
:func:`optbench.kernels.transforms.masked`) and a decay mask (``decay_masks``:
where its L2 and decoupled decay apply, :func:`optbench.kernels.transforms.decay_masked`).

The step counter ``t`` is shared. ``step(grads, active)`` takes an optional
(P,) int32 flag array on the parameters' device (``kernels.steps.StepAccount.active``):
a member whose flag is 0 is skipped -- its rows are neither read nor written --
and ``t`` counts the step anyway.

On a GPU a step neither reads anything back nor copies anything to the
device: :meth:`PopulationOptimizer.begin_epoch` computes the next steps'
scalar tables (steps, P_r, k) on the host and uploads them all in one copy,
and each step passes its row of the table (a device view) to the kernel. A
step past the prepared ones computes and uploads the tables of the next
:data:`AHEAD` steps (one copy).

One member alone: :meth:`PopulationOptimizer.member` gives a :class:`Member`
view (``rule``, ``hyper``, ``schedule``, ``t``, ``params``, ``state``,
``weights()``, ``state_dict()``), so
``suite.nn.checkpoint.save_checkpoint(model, path, optimizer=population.member(m))``
saves member m, and an Optimizer over a copy of its row given
``load_state_dict(population.member_state_dict(m))`` continues it as a single
run, bit for bit.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from .backend import array_kind, array_module
from .codegen.expr import evaluate
from .launch import aligned_zeros, check_flag, check_rows, kernel_backend, kernel_for
from .precision import PACKED, STATE_PRECISIONS, decode_state, encode_state, round_state, seed_keys
from .rule import Rule, RuleError, RunInfo, parse_expression
from .rules import get_rule
from .schedules import Schedule, as_schedule, check_bound, scheduled
from .staged import StagedStep
from .stages import plan_of
from .transforms import decay_masked, masked
from .views import views_of

#: Steps whose scalar tables a step outside :meth:`PopulationOptimizer.begin_epoch`'s prepares at once.
AHEAD = 64


def scalar_table(rule: Rule, hypers: Sequence[Mapping[str, float]], first: int, steps: int,
                 schedules: Sequence[Schedule | None] | None = None, dtype=np.float32) -> np.ndarray:
    """(steps, P_r, k) float32: [i, m] is member m's scalars for step
    ``first + i`` in ``rule.scalar_names`` order, each exactly
    ``np.float32(rule.step_scalars(scheduled(hypers[m], schedules[m], t), t, run)[name])``
    -- computed once per distinct (hyper-parameters, schedule). ``run``
    tells a rule's scalars the base lr and the schedule
    (:class:`~optbench.kernels.rule.RunInfo`). ``dtype`` float64: the
    doubles themselves (for a staged rule's per-view arithmetic)."""
    if first < 1:
        raise RuleError(f"step counter t starts at 1, got {first}")
    names = rule.scalar_names
    schedules = [None] * len(hypers) if schedules is None else list(schedules)
    distinct: dict[tuple, list[int]] = {}
    for m, (hp, schedule) in enumerate(zip(hypers, schedules)):
        distinct.setdefault((tuple(sorted(hp.items())), schedule), []).append(m)
    out = np.empty((steps, len(hypers), len(names)), dtype=dtype)
    for (items, schedule), rows in distinct.items():
        hp = dict(items)
        base = float(hp.get("lr", math.nan))
        run = RunInfo(base) if schedule is None or schedule.is_constant else RunInfo(base, schedule.factor)
        values = [rule.step_scalars(scheduled(hp, schedule, first + i), first + i, run) for i in range(steps)]
        out[:, rows, :] = np.array([[s[name] for name in names] for s in values], dtype=np.float64)[:, None, :]
    return out


def packs_state(rule: Rule, precision: str) -> bool:
    """Whether ``rule``'s kernel keeps its state at ``precision`` in 16 bits:
    a bf16 state of a rule updated in one pass. A rule that updates in stages
    reads its state between stages, so keeps it in float32 words, rounded
    after each step (and so does an 8-bit state)."""
    return precision in PACKED and plan_of(rule).simple


def state_bytes_per_param(rule: Rule, precision: str) -> int:
    """Bytes a step of ``rule`` moves per parameter with its element state
    kept at ``precision``: ``rule.bytes_per_param``, less 2 for each read and
    each write of a state buffer kept in 16 bits (Adam: 28 -> 20); float32
    words otherwise (no change)."""
    if not packs_state(rule, precision):
        return rule.bytes_per_param
    return rule.bytes_per_param - 2 * sum(1 + (s in rule.written) for s in rule.state)


class RuleGroup:
    """The members of one rule: rows [lo, hi) of the population.

    hypers: each member's resolved hyper-parameters; schedules: each member's
    learning-rate schedule (None: constant); stored: each state buffer of
    the rule as the kernel keeps it, (hi - lo, n), float32 or, where
    ``packed``, bf16 bits (uint16); state: its float32 values (the stored
    arrays themselves, or decoded copies); table: the prepared steps'
    scalars, (steps, hi - lo, k) on the device.
    """

    def __init__(self, rule: Rule, lo: int, hi: int, hypers, stored: dict, kernel, schedules, packed: bool = False):
        self.rule, self.lo, self.hi = rule, lo, hi
        self.hypers = tuple(hypers)
        self.schedules = tuple(schedules)
        self.stored = stored
        self.packed = packed
        #: The compiled update: a generated kernel, or for a staged rule its :class:`StagedStep`.
        self.kernel = kernel
        self.table = None
        self.table64 = None  # a staged rule's scalars in double
        self._offset = None  # the look-ahead offset's expression and scalar columns, when first asked

    @property
    def staged(self) -> bool:
        return isinstance(self.kernel, StagedStep)

    @property
    def state(self) -> dict:
        """Each state buffer's float32 values, (hi - lo, n): the arrays the
        kernel updates, or for a bf16 state decoded copies (exact)."""
        if not self.packed:
            return self.stored
        return {k: decode_state(v) for k, v in self.stored.items()}

    def set_state(self, name: str, values) -> None:
        """Set state buffer ``name`` to ``values`` (float32, broadcast to
        (hi - lo, n)); a bf16 state stores them rounded to nearest (values
        that a bf16 state held round to themselves)."""
        buf = self.stored[name]
        if not self.packed:
            buf[...] = values
            return
        full = buf.astype(np.float32)  # a float32 array of the right shape and device
        full[...] = values
        buf[...] = encode_state(full, "bf16", self.keys, 0, 0, "numpy" if isinstance(full, np.ndarray) else "cupy")

    @property
    def rows(self) -> slice:
        return slice(self.lo, self.hi)

    def table_for(self, first: int, steps: int) -> np.ndarray:
        """The host scalar table of steps first .. first + steps - 1 (:func:`scalar_table`)."""
        return scalar_table(self.rule, self.hypers, first, steps, self.schedules)

    def lookahead_offset(self, xp, t: int = 1):
        """w - params of every member, (hi - lo, n), for a rule with a
        look-ahead: its expression with each member's step-1 scalars as
        (hi - lo, 1) float32 columns -- with a schedule, from the lr of step
        ``t`` (the last step taken)."""
        key = 1 if all(s is None for s in self.schedules) else max(int(t), 1)
        if self._offset is None or self._offset[0] != key:
            names = self.rule.scalar_names
            expr = parse_expression(self.rule, self.rule.lookahead, set(names) | set(self.state) | {"w"})
            hypers = [scheduled(hp, s, key) for hp, s in zip(self.hypers, self.schedules)]
            table = xp.asarray(scalar_table(self.rule, hypers, 1, 1)[0])  # uploaded once (per step under a schedule)
            self._offset = key, expr, {s: table[:, j : j + 1] for j, s in enumerate(names)}
        _, expr, columns = self._offset
        return evaluate(expr, {**columns, **self.state, "w": self.params})


class Member:
    """Member m of a population on its own: ``rule``, ``hyper``, ``schedule``,
    ``t``, ``params`` (its row), ``state`` (its rows), ``weights()`` and
    ``state_dict()``. Views into the population's buffers, so they follow
    its later steps."""

    def __init__(self, population: "PopulationOptimizer", m: int):
        self._bind(population, m)

    def _bind(self, population: "PopulationOptimizer", m: int) -> None:
        group = population.group_of(m)
        self.population, self.index = population, m
        self.rule = group.rule
        self.params = population.params[m]
        #: The member's hyper-parameters (a copy; an Optimizer's may be changed by hand between steps).
        self.hyper = dict(population.hypers[m])

    @property
    def state(self) -> dict:
        """The member's state buffers (its rows): views into the population's
        float32 buffers, or for a bf16 state decoded copies (set a bf16 state
        with ``load_state_dict``); a staged rule's carried values and
        row/column state as float64 rows."""
        group = self.population.group_of(self.index)
        row = self.index - group.lo
        state = {k: v[row] for k, v in group.state.items()}
        if isinstance(group.kernel, StagedStep):
            state.update({k: v[row] for k, v in group.kernel.kinds_state().items()})
        return state

    @property
    def schedule(self) -> Schedule | None:
        return self.population.schedules[self.index]

    @property
    def t(self) -> int:
        return self.population.t

    def lookahead_offset(self):
        """w - params for a rule that stores a look-ahead point (Nesterov;
        under a schedule, with the lr of the last step taken); None for the
        others."""
        if self.rule.lookahead is None:
            return None
        group = self.population.group_of(self.index)
        return group.lookahead_offset(self.population.xp, self.t)[self.index - group.lo]

    def weights(self):
        """The weights to evaluate: the parameters themselves, or, for a rule
        that stores a look-ahead point, a new array params + offset."""
        offset = self.lookahead_offset()
        return self.params if offset is None else self.params + offset

    def state_dict(self) -> dict:
        """The member's state, to save or to restore later: the rule's name,
        its hyper-parameters, the step counter ``t`` and a copy of every state
        buffer (same array kind as the parameters; a staged rule's carried
        values and row/column state too, as float64); with a schedule, also
        ``schedule`` (its description and total steps, for the record: the
        schedule itself is the constructor's, and ``t`` is where it stands)."""
        sd = {"rule": self.rule.name, "hyper": self.hyper, "t": self.t,
              "state": {k: v.copy() for k, v in self.state.items()}}
        if self.schedule is not None:
            sd["schedule"] = {**self.schedule.as_dict(), "total": self.schedule.total}
        return sd


class PopulationOptimizer:
    """P members' update rules over the rows of one (P, n) parameter array.

    params: (P, n) float32 C-contiguous, NumPy or CuPy; row m is member m's
        flat parameter buffer;
    rules: P rule names or :class:`Rule` objects, one per member; the
        members of one rule must occupy one contiguous range of rows;
    hypers: P dicts of hyper-parameters (None or {} for the defaults);
    backend: whose kernels run the update: "numpy" or "numba" for NumPy
        arrays, "cupy" for CuPy arrays (a name or a :class:`kernels.Backend`);
        None: the first of :data:`optbench.kernels.launch.ARRAY_KERNELS`;
    masks: optionally (P, n) float32 0/1 on the parameters' device: each
        member's parameters and state are held at exactly 0 where its mask
        is 0 (:meth:`set_masks`); the parameters under a 0 are zeroed now;
    schedules: optionally P learning-rate schedules, one per member (None
        or a constant one: none; see :mod:`optbench.kernels.schedules`);
    decay_masks: optionally (P, n) float32 on the parameters' device: row
        m is 1.0 where member m's L2 and decoupled decay apply and 0.0 where
        they do not (a row of ones gives, bit for bit, the unmasked update);
    layout: the :class:`~optbench.kernels.flat.FlatLayout` of a row -- the
        views that a rule's reductions, row/column statistics and matrix
        steps work on (:mod:`optbench.kernels.views`); None: the whole row is
        one vector.

    groups: one :class:`RuleGroup` per rule, in row order; t: steps taken.
    """

    # Why decay_masks is a (P, n) array rather than one (n,) row shared by
    # every member: the generated population kernels address every buffer of
    # a launch with the parameters' row stride (CUDA: p + member * ld, one
    # ld for all buffers; Numba: C-contiguous 2-D arrays), so a shared row
    # would need a stride-0 buffer they cannot take. The full array costs
    # what one more state buffer costs (4 bytes per parameter per member in
    # memory, and 4 more bytes read per parameter per step: SGD moves 12,
    # Adam 28) and, as for the pruning ``masks``, lets each member have its
    # own: a member that decays everything has a row of ones, so the members
    # of a rule stay one group, one launch.
    def __init__(self, params, rules: Sequence, hypers: Sequence, backend=None, masks=None, schedules=None,
                 decay_masks=None, layout=None, state_precision: str = "fp32", seeds=None):
        check_rows("w", params)
        self.params = params
        self.layout = layout
        members, n = params.shape
        if members == 0:
            raise ValueError("a population needs at least one member (params has 0 rows)")
        #: "numpy" or "cupy": the kind of array every buffer must be.
        self.arrays = array_kind(params)
        #: "numpy", "numba" or "cupy": whose kernels run the update.
        self.backend = kernel_backend(self.arrays, backend)
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
        if decay_masks is not None:
            check_rows("decay_mask", decay_masks, params.shape, self.arrays)
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
        if state_precision not in STATE_PRECISIONS:
            raise ValueError(f"unknown state precision {state_precision!r}; allowed: {', '.join(STATE_PRECISIONS)}")
        #: How every member's state is stored (:mod:`.precision`): after each step
        #: it is rounded in place to what that precision holds.
        self.state_precision = state_precision
        seeds = range(members) if seeds is None else list(seeds)
        if len(seeds) != members:
            raise ValueError(f"params has {members} members (rows) but {len(seeds)} seeds were given")
        keys = seed_keys(seeds)  # each member's stochastic-rounding key
        self._keys = keys if self.arrays == "numpy" else self.xp.asarray(keys)
        self.masks = None
        self.groups: tuple[RuleGroup, ...] = tuple(
            self._group(rule, lo, hi) for rule, lo, hi in _contiguous_runs(self.rules))
        if masks is not None:
            self.set_masks(masks)
        self._always = self.xp.ones(members, dtype=np.int32)  # the active flags when none are given
        self.t = 0
        self._first, self._steps = 1, 0  # steps first .. first + steps - 1 have tables
        self._made = None  # (first, steps, host tables): the last steps' tables, made once

    def _kernel_rule(self, rule: Rule) -> Rule:
        """The rule a group's kernel runs: with the decay and pruning masks applied."""
        rule = rule if self.decay_masks is None else decay_masked(rule)
        return rule if self.masks is None else masked(rule)

    def _group(self, rule: Rule, lo: int, hi: int) -> RuleGroup:
        n = self.params.shape[1]
        if self.arrays == "numpy":  # cache-line aligned
            state = {s: aligned_zeros((hi - lo) * n).reshape(hi - lo, n) for s in rule.state}
        else:  # CuPy's allocations are 256-byte aligned already
            state = {s: self.xp.zeros((hi - lo, n), dtype=np.float32) for s in rule.state}
        rows = self.params[lo:hi]
        for s, start in rule.init.items():  # a state that does not start at zero
            state[s][...] = rows if start == "w" else np.float32(start)
        packed = packs_state(rule, self.state_precision)
        group = RuleGroup(rule, lo, hi, self.hypers[lo:hi], state, None, self.schedules[lo:hi], packed)
        group.keys = self._keys[lo:hi]
        if packed:
            group.stored = {s: encode_state(v, self.state_precision, group.keys, 0, j, self.backend)
                            for j, (s, v) in enumerate(state.items())}
        else:
            self._round_state(group, 0)
        group.params = rows
        group.kernel = self._kernel(group)
        return group

    def _kernel(self, group: RuleGroup, old=None):
        """A group's compiled update for the masks at hand: the rule's kernel,
        or for a staged rule its :class:`StagedStep` (keeping ``old``'s carried
        values and row/column state)."""
        rule = self._kernel_rule(group.rule)
        plan = plan_of(rule)
        if plan.simple:
            return kernel_for(rule, self.backend, self.state_precision if group.packed else "fp32")
        views = views_of(self.layout, self.params.shape[1], rule.matrices, self.xp)
        staged = StagedStep(plan, views, group.hypers, self.backend, self.xp)
        if isinstance(old, StagedStep):  # the same arrays, which members' state views point into
            staged.carried, staged.rowstate, staged.colstate = old.carried, old.rowstate, old.colstate
        return staged

    def set_masks(self, masks) -> None:
        """Hold each member's parameters and state at exactly 0 where its row
        of ``masks`` ((P, n) float32 0/1) is 0, inside every later update
        (one launch, the masked rule); the parameters and state under a 0 are
        zeroed now. None removes the masks."""
        if masks is not None:
            check_rows("mask", masks, self.params.shape, self.arrays)
        self.masks = masks
        for group in self.groups:
            group.kernel = self._kernel(group, group.kernel)
            if masks is not None:
                for name, s in group.state.items():
                    group.set_state(name, s * masks[group.rows])
        if masks is not None:
            self.params *= masks

    def group_of(self, m: int) -> RuleGroup:
        """The group that holds member ``m``."""
        for group in self.groups:
            if group.lo <= m < group.hi:
                return group
        raise IndexError(f"member {m} out of range: the population has {self.params.shape[0]} members")

    def begin_epoch(self, n_steps: int, table=None) -> None:
        """Compute the scalar tables of the next ``n_steps`` steps (t + 1 ..
        t + n_steps) for every group, and upload them in one copy on a GPU --
        or use ``table``, the device copy of :meth:`epoch_table` that the
        caller uploaded together with its own data (one copy for both)."""
        if n_steps < 1:
            raise ValueError(f"begin_epoch needs at least one step, got {n_steps}")
        self._prepare(self.t + 1, int(n_steps), table)

    def epoch_table(self, n_steps: int) -> np.ndarray:
        """The scalar tables of the next ``n_steps`` steps, flat on the host
        (float32): what :meth:`begin_epoch` uploads."""
        return np.concatenate([h.reshape(-1) for h in self._host_tables(self.t + 1, int(n_steps))])

    def _host_tables(self, first: int, steps: int) -> list:
        if self._made is None or self._made[:2] != (first, steps):
            self._made = (first, steps, [g.table_for(first, steps) for g in self.groups])
        return self._made[2]

    def _prepare(self, first: int, steps: int, table=None) -> None:
        host = self._host_tables(first, steps)
        if table is not None:
            if table.shape != (sum(h.size for h in host),):
                raise ValueError(f"the uploaded scalar table has shape {table.shape}; these steps' tables "
                                 f"hold {sum(h.size for h in host)} values")
            flat = table
        else:
            flat = np.concatenate([h.reshape(-1) for h in host])
            if self.arrays == "cupy":
                flat = self.xp.asarray(flat)  # the one host-to-device copy
        offset = 0
        for group, h in zip(self.groups, host):
            group.table = flat[offset : offset + h.size].reshape(h.shape)
            offset += h.size
            if group.staged:  # its per-view arithmetic takes the scalars in double (one more copy)
                group.table64 = self.xp.asarray(scalar_table(group.rule, group.hypers, first, steps,
                                                             group.schedules, dtype=np.float64))
        self._first, self._steps = first, steps

    def advance(self, steps: int) -> None:
        """Count ``steps`` updates that ran without :meth:`step` being called:
        a replayed CUDA graph of steps captured from :meth:`step` (the
        scalar tables of :meth:`begin_epoch` are where they read theirs)."""
        if not self._first <= self.t + steps < self._first + self._steps:
            raise ValueError(f"steps {self.t + 1} .. {self.t + steps} have no prepared scalars "
                             f"(prepared: {self._first} .. {self._first + self._steps - 1})")
        self.t += steps

    @property
    def why_not_capturable(self) -> str | None:
        """Why a step of this population cannot be captured as a CUDA graph,
        or None: a rule whose update runs in stages takes its scalars from a
        second, per-epoch table and reduces into temporaries."""
        staged = [g.rule.name for g in self.groups if g.staged]
        if staged:
            return f"rule {staged[0]!r} updates in stages"
        if self.state_precision == "bf16-sr":
            return "stochastic rounding of the state takes each step's number from the host"
        return None

    def set_hypers(self, m: int, hyper: Mapping[str, float]) -> None:
        """Give member ``m`` new hyper-parameters (resolved and checked by
        its rule) from the next step on."""
        resolved = self.rules[m].resolve(hyper)
        self.hypers = self.hypers[:m] + (resolved,) + self.hypers[m + 1:]
        group = self.group_of(m)
        group.hypers = self.hypers[group.lo:group.hi]
        group._offset = None
        self._steps, self._made = 0, None  # the prepared tables are stale

    def step(self, grads, active=None) -> None:
        """One update of every active member: w, state := rule(w, g, state),
        one launch per group. grads: (P, n) float32 like the parameters;
        active: None (all) or a (P,) int32 array on their device, 0 skipping
        a member. Reads nothing back; copies nothing to a GPU when
        :meth:`begin_epoch` prepared this step."""
        check_rows("g", grads, self.params.shape, self.arrays)
        if active is None:
            active = self._always
        else:
            check_flag(active, self.arrays)
            if active.shape != (self.params.shape[0],) or not active.flags.c_contiguous:
                raise ValueError(f"the active flags must be a contiguous ({self.params.shape[0]},) array, "
                                 f"one per member; got shape {active.shape}")
        self.t += 1
        if not self._first <= self.t < self._first + self._steps:
            self._prepare(self.t, AHEAD)
        i = self.t - self._first
        for group in self.groups:
            rows = group.rows
            buffers = {"w": self.params[rows], "g": grads[rows], **group.stored}
            if self.masks is not None:
                buffers["mask"] = self.masks[rows]
            if self.decay_masks is not None:
                buffers["decay_mask"] = self.decay_masks[rows]
            if group.staged:
                group.kernel.step(buffers, group.table[i], group.table64[i], active[rows])
            elif group.packed:  # the kernel rounds the state as it stores it
                group.kernel.population(buffers, group.table[i], active[rows], group.keys, self.t)
            else:
                group.kernel.population(buffers, group.table[i], active[rows])
            self._round_state(group, self.t)

    def _round_state(self, group: RuleGroup, step: int) -> None:
        """A low-precision state's rounding after ``step`` where the kernel
        keeps it in float32 words: each state buffer of the group in place.
        A member skipped by its active flag keeps a bf16 state (a bf16 value
        rounds to itself); its 8-bit blocks may move by a code where the
        block's largest value is negative (the signed map has no -1), which
        a member frozen for good does not notice."""
        if self.state_precision != "fp32" and not group.packed:
            for j, name in enumerate(group.rule.state):
                round_state(group.state[name], self.state_precision, group.keys, step, j, self.backend)

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
