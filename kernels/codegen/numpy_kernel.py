"""The NumPy path: a rule's update compiled to in-place ufunc calls over chunks.

NumPy evaluates ``a * b + c`` one operation at a time over the whole array,
so the naive way to write Adam streams every 64 MB buffer through memory a
dozen times and allocates a temporary per operation. Here the update text is
compiled once into a list of ufunc calls with ``out=`` arguments, and the
buffers are walked in chunks small enough that the chunk of every buffer plus
the temporaries stays in the core's L2 cache: each buffer is then read from
and written to memory about once per step, and nothing is allocated per step.

Scalars that are exactly 0 or 1 in a step (no L2, no decay, a bias correction
that has reached 1) are folded out of the program (``x * 0`` and ``x + 0``
vanish), so an unused feature costs no pass over the chunk. Folding ``0 * x``
to 0 differs from IEEE only where x is Inf or NaN, which the training loop
treats as divergence anyway (and in the sign of a zero, as does ``x + 0`` ->
x). Subexpressions left constant are computed in float32 by the same ufuncs.

The rule language's functions are ufuncs too (np.abs, np.sign, np.minimum,
np.maximum: the semantics every backend follows); ``where(x OP y, a, b)``
compares into a bool temporary, then selects a's or b's bits with integer
ops (:func:`_where`).

The program runs on P members' (P, n) buffers at once (a single run is
P = 1): on tiles of about a chunk (whole rows where a row is shorter than a
chunk, else a chunk of one row), each member's scalars a column of the tile
broadcast along its row. The ufuncs compute the same float32 operations per
element whatever the tile, so each member's row is bit for bit what a run of
its own would make of it. Large steps are split between threads (NumPy
releases the GIL inside a ufunc's loop), each thread with its own
temporaries.

A state kept in bfloat16 (``precision`` "bf16" or "bf16-sr") is a uint16
array of bits: each tile of it is decoded into a float32 temporary (two
passes: widen, shift), the program runs on that, and the tile is rounded
back (:func:`~optbench.kernels.precision.bf16_rne`, ``bf16_sr``: about
eight more ufunc passes, and a Philox draw per four elements for
stochastic rounding). On this path the 16-bit state costs time rather than
saving it; the Numba and CUDA loops fuse the conversions into their one
pass.
"""

from __future__ import annotations

import ast
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

import numpy as np

from ..precision import PACKED, bf16_rne, bf16_sr, sr_bits
from ..rule import Rule

#: Elements per chunk (512 KB per array). A ufunc call costs ~1 us of Python
#: overhead, so chunks must be long; they must also stay cache-resident so
#: each buffer crosses the memory bus once. Measured on a 2-core EPYC
#: (2 MB L2 per core, 32 MB L3), Adam at 2^24 with 2 threads: 16 K floats
#: 0.47x a copy's bandwidth, 64 K 1.01x, 128 K 1.22x.
CHUNK = 1 << 17
#: A step is split between threads only when it moves at least this many
#: bytes (bytes per parameter x n): below, a thread hand-off costs more than
#: the second core gives. Measured on the 2-core EPYC, one step, 1 thread vs
#: 2: SGD (12 B/param) 2^21 0.36 vs 0.51 ms, 2^22 1.22 vs 1.07 ms; Adam
#: (28 B/param) 2^20 1.60 vs 1.75 ms, 2^21 3.32 vs 1.98 ms. Both cross over
#: near 48 MB, beyond the 32 MB L3, where two cores' memory bandwidth counts.
THREAD_MIN_BYTES = 32 << 20

_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
#: The rule language's functions as ufuncs (where is compiled on its own).
_CALLS = {"sqrt": np.sqrt, "abs": np.abs, "sign": np.sign, "min": np.minimum, "max": np.maximum}
#: where's comparisons, written into a bool temporary (a NaN compares false).
_COMPARE = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
            ast.Eq: np.equal, ast.NotEq: np.not_equal}


def _where(cond, a, b, mask, out):
    """out := where(cond, a, b), exactly, with integer ops on the float32 bits:
    mask = -uint32(cond) (all ones where cond holds), out = b ^ ((a ^ b) &
    mask). Branch-free: np.copyto(out, a, where=cond) takes a branch per
    element and was 9x slower (540 vs 58 us per 128 K chunk, random cond).
    ``mask`` is a float32 temporary; ``out`` may be ``a`` but not ``b``."""
    m, o, ub = mask.view(np.uint32), out.view(np.uint32), b.view(np.uint32)
    np.copyto(m, cond)
    np.negative(m, out=m)
    np.bitwise_xor(a.view(np.uint32), ub, out=o)
    np.bitwise_and(o, m, out=o)
    np.bitwise_xor(o, ub, out=o)


def _where_into_b(cond, a, b, mask, out):
    """The same for an ``out`` that is ``b`` (``m = where(c, x, m)``):
    out = a ^ ((a ^ b) & ~mask), with ~mask = uint32(cond) - 1."""
    m, o, ua = mask.view(np.uint32), out.view(np.uint32), a.view(np.uint32)
    np.copyto(m, cond)
    np.subtract(m, np.uint32(1), out=m)
    np.bitwise_xor(ua, b.view(np.uint32), out=o)
    np.bitwise_and(o, m, out=o)
    np.bitwise_xor(o, ua, out=o)


def _execute(plan, env: list) -> None:
    """Run a plan's ufunc calls, each writing into its ``out=`` slot of ``env``
    (one and two arguments spelled out: the common cases, without a list)."""
    for ufunc, args, out in plan:
        if len(args) == 2:
            ufunc(env[args[0]], env[args[1]], out=env[out])
        elif len(args) == 1:
            ufunc(env[args[0]], out=env[out])
        else:
            ufunc(*[env[a] for a in args], out=env[out])


class _Const:
    """A folded constant value in a simplified expression: a float32, as the
    program would hold it (so folding computes what the ops would)."""

    def __init__(self, value):
        self.value = np.float32(value)


def _simplify(node, fold: Mapping[str, float]):
    """Fold scalars known to be 0 or 1; returns an ast node or a _Const.

    Constant subexpressions are computed in float32 with the ufuncs the
    program would run, so they are exact. The identities x * 1, x / 1, x - 0
    are exact too; x + 0 and 0 - x differ from IEEE only for a zero's sign,
    and 0 * x for an Inf or NaN x (a diverged run) or the sign of the zero."""
    with np.errstate(all="ignore"):  # a constant 1/0 folds to Inf, as the ufunc gives
        return _fold(node, fold)


def _fold(node, fold):
    if isinstance(node, ast.Constant):
        return _Const(node.value)
    if isinstance(node, ast.Name):
        return _Const(fold[node.id]) if node.id in fold else node
    if isinstance(node, ast.UnaryOp):
        a = _fold(node.operand, fold)
        return _Const(-a.value) if isinstance(a, _Const) else ast.UnaryOp(ast.USub(), a)
    if isinstance(node, ast.Compare):  # a bool when both sides are constants
        a, b = _fold(node.left, fold), _fold(node.comparators[0], fold)
        if isinstance(a, _Const) and isinstance(b, _Const):
            return bool(_COMPARE[type(node.ops[0])](a.value, b.value))
        return ast.Compare(a, node.ops, [b])
    if isinstance(node, ast.Call):
        args = [_fold(a, fold) for a in node.args]
        if node.func.id == "where":
            cond, a, b = args
            if isinstance(cond, bool):
                return a if cond else b
        elif all(isinstance(a, _Const) for a in args):
            return _Const(_CALLS[node.func.id](*(a.value for a in args)))
        return ast.Call(node.func, args, [])
    assert isinstance(node, ast.BinOp)
    a, b = _fold(node.left, fold), _fold(node.right, fold)
    ca = a.value if isinstance(a, _Const) else None
    cb = b.value if isinstance(b, _Const) else None
    op = type(node.op)
    if ca is not None and cb is not None:
        return _Const(_BINARY[op](ca, cb))
    if op is ast.Mult:
        if ca == 0 or cb == 0:
            return _Const(0.0)
        if ca == 1:
            return b
        if cb == 1:
            return a
    elif op is ast.Add:
        if ca == 0:
            return b
        if cb == 0:
            return a
    elif op is ast.Sub:
        if cb == 0:
            return a
        if ca == 0:
            return ast.UnaryOp(ast.USub(), b)
    elif op is ast.Div and cb == 1:
        return a
    return ast.BinOp(a, node.op, b)


class Program:
    """A compiled update: ``ops`` of (function, in_refs, out_ref) over refs,
    each run as ``function(*ins, out=out)``.

    A ref is ("b", buffer), ("t", temp index), ("k", bool temp index) or
    ("c", float32 constant); scalars are resolved per step into ("c", value)
    through ``scalar_refs``. The bool temps hold where's conditions.
    """

    def __init__(self, rule: Rule, fold: Mapping[str, float]):
        self.rule = rule
        self.ops: list[tuple] = []
        self.n_temps = 0
        self.n_bools = 0
        self._free: list[int] = []
        bind = {b: ("b", b) for b in rule.buffers}  # current value of each name
        local_slot: dict[str, int] = {}
        statements = rule.statements
        for i, stmt in enumerate(statements):
            expr = _simplify(stmt.expr, fold)
            target = stmt.target
            if isinstance(expr, ast.Name) and target not in rule.written:
                later = {s.target for s in statements[i + 1 :]}
                if expr.id not in later:  # e.g. g = g + l2 * w with l2 = 0
                    bind[target] = bind.get(expr.id, ("s", expr.id))
                    continue
            if target in rule.written:
                dest = ("b", target)
            else:  # a local (or the local copy of g): a dedicated temporary
                if target not in local_slot:
                    local_slot[target] = self._new_temp()
                dest = ("t", local_slot[target])
            if isinstance(expr, ast.Name) and bind.get(expr.id) == dest:
                continue  # x = x after folding: nothing to do
            self._gen(expr, bind, dest)
            bind[target] = dest

    def _new_temp(self) -> int:
        if self._free:
            return self._free.pop()
        self.n_temps += 1
        return self.n_temps - 1

    def _release(self, ref, keep) -> None:
        if ref[0] == "t" and ref not in keep:
            self._free.append(ref[1])

    def _out(self, dest):
        out = dest if dest is not None else ("t", self._new_temp())
        if out[0] == "t" and out[1] in self._free:
            self._free.remove(out[1])
        return out

    def _gen(self, node, bind, dest=None):
        """Emit ops for ``node``; returns the ref holding its value."""
        if isinstance(node, _Const):
            ref = ("c", np.float32(node.value))
        elif isinstance(node, ast.Name):
            ref = bind[node.id] if node.id in bind else ("s", node.id)
        elif isinstance(node, ast.Call) and node.func.id == "where":
            return self._gen_where(node, bind, dest)
        else:
            keep = set(bind.values())
            if isinstance(node, ast.BinOp):
                args = [self._gen(node.left, bind), self._gen(node.right, bind)]
                ufunc = _BINARY[type(node.op)]
            elif isinstance(node, ast.UnaryOp):
                args, ufunc = [self._gen(node.operand, bind)], np.negative
            else:
                args, ufunc = [self._gen(a, bind) for a in node.args], _CALLS[node.func.id]
            for a in args:
                self._release(a, keep)
            out = self._out(dest)
            self.ops.append((ufunc, tuple(args), out))
            return out
        if dest is not None and ref != dest:
            self.ops.append((np.positive, (ref,), dest))
            return dest
        return ref

    def _gen_where(self, node, bind, dest):
        """where(x OP y, a, b): a and b first, then the comparison into a bool
        temporary (so only one is ever live: a where nested in x or y is done
        before it is written), then the selection (:func:`_where`)."""
        keep = set(bind.values())
        cond, a_node, b_node = node.args
        a, b = self._gen(a_node, bind), self._gen(b_node, bind)
        if a == b:  # where(c, a, a) is a
            out = self._out(dest)
            if out != a:
                self.ops.append((np.positive, (a,), out))
            self._release(a, keep)
            return out
        x, y = self._gen(cond.left, bind), self._gen(cond.comparators[0], bind)
        self.n_bools = 1
        self.ops.append((_COMPARE[type(cond.ops[0])], (x, y), ("k", 0)))
        for r in (x, y):
            self._release(r, keep)
        out = self._out(dest)  # a fresh temporary, or a destination that may be a or b
        mask = ("t", self._new_temp())  # neither a's nor b's temporary: both are still held
        self.ops.append((_where_into_b if out == b else _where, (("k", 0), a, b, mask), out))
        for r in (mask, a, b):
            self._release(r, keep)
        return out


class NumpyKernel:
    """Runs a rule's update in place on NumPy buffers, tile by tile."""

    def __init__(self, rule: Rule, chunk: int = CHUNK, threads: int | None = None,
                 fold: bool = True, precision: str = "fp32"):
        self.rule = rule
        #: How the rule's state is stored: float32, or bf16 bits (uint16)
        #: decoded into a float32 tile before the program and rounded back after.
        self.precision = precision
        self._packed = [i for i, b in enumerate(rule.buffers) if b in rule.state] if precision in PACKED else []
        self.fold = fold  # False keeps every operation (tests check folding is exact)
        self.chunk = int(chunk)
        self.threads = max(1, threads if threads is not None else (os.cpu_count() or 1))
        self._programs: dict[tuple, Program] = {}
        self._plans: dict[int, tuple[list, list]] = {}  # id(program) -> _plan(program)
        self._temps: list[list[np.ndarray]] = []
        self._pool = None

    def program(self, scalars: Mapping[str, float]) -> Program:
        fold = tuple(sorted((k, v) for k, v in scalars.items() if self.fold and v in (0.0, 1.0)))
        prog = self._programs.get(fold)
        if prog is None:
            prog = self._programs[fold] = Program(self.rule, dict(fold))
        return prog

    def _temps_for(self, worker: int, prog: Program, extra: int = 0) -> list[np.ndarray]:
        """Worker ``worker``'s scratch for ``prog``: its float temporaries, its
        bool temporaries, then ``extra`` more float ones, each of a chunk.
        A bool temporary is the first chunk bytes of a float32 temporary
        viewed as np.bool_: no memory of its own, allocated once."""
        while len(self._temps) <= worker:
            self._temps.append([])
        temps = self._temps[worker]
        need = prog.n_temps + prog.n_bools + extra
        while len(temps) < need:
            temps.append(np.empty(self.chunk, dtype=np.float32))
        scratch = temps[:need]  # the plan's constant slots follow its own temps
        k = prog.n_temps
        scratch[k : k + prog.n_bools] = [t.view(np.bool_)[: self.chunk] for t in scratch[k : k + prog.n_bools]]
        return scratch

    def _plan(self, prog: Program) -> tuple[list, list]:
        """:meth:`_plan_of` ``prog``, made once per program (its programs live as long as the kernel)."""
        plan = self._plans.get(id(prog))
        if plan is None:
            plan = self._plans[id(prog)] = self._plan_of(prog)
        return plan

    def _plan_of(self, prog: Program) -> tuple[list, list]:
        """``prog`` over one list of operands per chunk: the buffers' chunks
        first, then the temporaries (float, then bool), then the scalars and
        constants the ops read. Returns (plan, extra): plan lists (function,
        operand slots, out slot); extra the ("s", name) and ("c", value) refs
        of the last slots."""
        names = self.rule.buffers
        slot = {("b", b): i for i, b in enumerate(names)}
        slot.update({("t", i): len(names) + i for i in range(prog.n_temps)})
        slot.update({("k", i): len(names) + prog.n_temps + i for i in range(prog.n_bools)})
        first = len(names) + prog.n_temps + prog.n_bools
        extra: list = []
        for _, args, _ in prog.ops:
            for r in args:
                if r[0] in "sc" and r not in slot:
                    slot[r] = first + len(extra)
                    extra.append(r)
        return [(ufunc, [slot[r] for r in args], slot[out]) for ufunc, args, out in prog.ops], extra

    def _in_threads(self, calls: list[tuple]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="optbench")
        for f in [self._pool.submit(*call) for call in calls]:
            f.result()

    def population(self, buffers: Mapping[str, np.ndarray], scalars: np.ndarray, active: np.ndarray,
                   keys=None, step: int = 0) -> None:
        """Every active member's update, in place.

        buffers: (P, n) float32 arrays (rows may be strided views), row m
        member m's -- a bf16 state's uint16 bits; scalars: the (P, k) float32
        table, row m member m's scalars in ``rule.scalar_names`` order;
        active: (P,) flags, 0 skips a member (its rows are neither read nor
        written); keys, step: stochastic rounding's (P, 2) seed words and the
        step's number.

        Tiles hold about a chunk: rows x n where a row is shorter than a
        chunk, else a chunk of one row. Scalars that are 0 or 1 for every
        active member are folded out, as in a single run. All members active,
        or one contiguous range of active rows: the tiles are views into the
        buffers; otherwise each tile's active rows are gathered into chunk
        buffers, and the written ones scattered back.
        """
        if scalars.dtype != np.float32:
            raise TypeError(f"population scalars must be a float32 table, got {scalars.dtype}")
        arrays = [buffers[b] for b in self.rule.buffers]
        n = arrays[0].shape[1]
        rows = np.flatnonzero(active)
        if rows.size == 0 or n == 0:
            return
        m, lo = rows.size, int(rows[0])
        gather = None if rows[-1] - lo + 1 == m else rows
        if gather is None:
            arrays, table = [a[lo : lo + m] for a in arrays], scalars[lo : lo + m]
        else:
            table = scalars[rows]
        names = self.rule.scalar_names
        if m == 1:  # one member (a single run): its scalars as float32 scalars, the same arithmetic
            row = table[0]
            prog = self.program(dict(zip(names, row.tolist())))
            plan, extra = self._plan(prog)
            operands = [(row[names.index(r[1])] if r[0] == "s" else np.float32(r[1]), False) for r in extra]
        else:
            fold = {}
            if self.fold:
                same = (table == 0).all(axis=0) | (table == 1).all(axis=0)
                fold = {s: float(table[0, j]) for j, s in enumerate(names) if same[j]}
            prog = self.program(fold)
            plan, extra = self._plan(prog)
            # (operand, is a column): a member's scalar is its row of a (m, 1) column.
            operands = [(table[:, names.index(r[1]), None], True) if r[0] == "s" else (np.float32(r[1]), False)
                        for r in extra]
        cols = min(n, self.chunk)
        per = max(1, self.chunk // cols)
        tiles = [(j, min(m, j + per), c, min(n, c + cols)) for j in range(0, m, per) for c in range(0, n, cols)]
        workers = self.threads if m * n * self.rule.bytes_per_param >= THREAD_MIN_BYTES else 1
        rounding = None
        if self.precision == "bf16-sr" and self._packed:  # each tile row's member, for its bits
            rounding = (keys, int(step), np.arange(lo, lo + m) if gather is None else gather)
        if workers == 1:
            self._run_tiles(plan, arrays, operands, gather, tiles, prog, 0, rounding)
            return
        share = -(-len(tiles) // workers)
        self._in_threads([(self._run_tiles, plan, arrays, operands, gather, tiles[i : i + share], prog, w, rounding)
                          for w, i in enumerate(range(0, len(tiles), share))])

    def _run_tiles(self, plan, arrays, operands, gather, tiles, prog: Program, worker: int, rounding) -> None:
        copied = gather is not None or self._packed
        temps = self._temps_for(worker, prog, len(arrays) if copied else 0)
        n_temps = prog.n_temps + prog.n_bools  # the program's scratch; the gathered rows follow
        written = [i for i, b in enumerate(self.rule.buffers) if b in self.rule.written]
        for j0, j1, c0, c1 in tiles:
            shape = (j1 - j0, c1 - c0)
            shaped = [t[: shape[0] * shape[1]].reshape(shape) for t in temps]
            rows = slice(j0, j1) if gather is None else gather[j0:j1]
            if not copied:
                env = [a[j0:j1, c0:c1] for a in arrays]
            else:
                env = shaped[n_temps:]
                for i, (a, buf) in enumerate(zip(arrays, env)):
                    if i in self._packed:  # bf16 bits, decoded exactly: the float32 bits' high half
                        bits = buf.view(np.uint32)
                        np.copyto(bits, a[rows, c0:c1])
                        np.left_shift(bits, np.uint32(16), out=bits)
                    elif gather is None:
                        env[i] = a[j0:j1, c0:c1]
                    elif j1 - j0 == 1:  # a piece of one row: np.take would first copy the strided a[:, c0:c1] whole
                        np.copyto(buf, a[rows[0] : rows[0] + 1, c0:c1])
                    else:
                        np.take(a[:, c0:c1], rows, axis=0, out=buf, mode="clip")  # clip: no buffering of out
            env = env + shaped[:n_temps] + [o[j0:j1] if column else o for o, column in operands]
            _execute(plan, env)
            for i in written:
                if i in self._packed:
                    arrays[i][rows, c0:c1] = self._round(env[i], i, rounding, j0, c0)
                elif gather is not None:
                    arrays[i][rows, c0:c1] = env[i]

    def _round(self, tile: np.ndarray, i: int, rounding, j0: int, c0: int) -> np.ndarray:
        """A state tile's bf16 bits: to nearest, or stochastically with each
        member's bits at its elements c0 .. (:func:`~optbench.kernels.precision.sr_bits`)."""
        if self.precision == "bf16":
            return bf16_rne(tile)
        keys, step, members = rounding
        buffer = self.rule.state.index(self.rule.buffers[i])
        r16 = np.empty(tile.shape, dtype=np.uint32)
        for r, m in enumerate(members[j0 : j0 + tile.shape[0]]):
            seed = int(keys[m, 0]) | (int(keys[m, 1]) << 32)
            r16[r] = sr_bits(tile.shape[1], seed, step, buffer, c0)
        return bf16_sr(tile, r16)
