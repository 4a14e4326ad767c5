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
treats as divergence anyway.

Large buffers are split between threads (NumPy releases the GIL inside a
ufunc's loop), each thread with its own temporaries.

The population form (:meth:`NumpyKernel.population`) runs the same program
on P members' (P, n) buffers at once: on tiles of about a chunk (whole rows
where a row is shorter than a chunk), each member's scalars a column of the
tile broadcast along its row. The ufuncs compute the same float32 operations
per element as for a single run, so each member's row is bit for bit what a
single run of its own would make of it.
"""

from __future__ import annotations

import ast
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

import numpy as np

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


class _Const:
    """A folded constant value in a simplified expression."""

    def __init__(self, value: float):
        self.value = float(value)


def _simplify(node, fold: Mapping[str, float]):
    """Fold scalars known to be 0 or 1; returns an ast node or a _Const."""
    if isinstance(node, ast.Constant):
        return _Const(node.value)
    if isinstance(node, ast.Name):
        return _Const(fold[node.id]) if node.id in fold else node
    if isinstance(node, ast.UnaryOp):
        a = _simplify(node.operand, fold)
        return _Const(-a.value) if isinstance(a, _Const) else ast.UnaryOp(ast.USub(), a)
    if isinstance(node, ast.Call):
        a = _simplify(node.args[0], fold)
        if isinstance(a, _Const):
            return _Const(np.sqrt(a.value))
        return ast.Call(node.func, [a], [])
    assert isinstance(node, ast.BinOp)
    a, b = _simplify(node.left, fold), _simplify(node.right, fold)
    ca = a.value if isinstance(a, _Const) else None
    cb = b.value if isinstance(b, _Const) else None
    op = type(node.op)
    if ca is not None and cb is not None:
        return _Const({ast.Add: ca + cb, ast.Sub: ca - cb, ast.Mult: ca * cb,
                       ast.Div: ca / cb if cb else np.inf}[op])
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
    """A compiled update: ``ops`` of (ufunc, in_refs, out_ref) over refs.

    A ref is ("b", buffer), ("t", temp index) or ("c", float32 constant);
    scalars are resolved per step into ("c", value) through ``scalar_refs``.
    """

    def __init__(self, rule: Rule, fold: Mapping[str, float]):
        self.rule = rule
        self.ops: list[tuple] = []
        self.n_temps = 0
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

    def _gen(self, node, bind, dest=None):
        """Emit ops for ``node``; returns the ref holding its value."""
        if isinstance(node, _Const):
            ref = ("c", np.float32(node.value))
        elif isinstance(node, ast.Name):
            ref = bind[node.id] if node.id in bind else ("s", node.id)
        else:
            keep = set(bind.values())
            if isinstance(node, ast.BinOp):
                args = [self._gen(node.left, bind), self._gen(node.right, bind)]
                ufunc = _BINARY[type(node.op)]
            else:
                args = [self._gen(node.operand if isinstance(node, ast.UnaryOp) else node.args[0], bind)]
                ufunc = np.negative if isinstance(node, ast.UnaryOp) else np.sqrt
            for a in args:
                self._release(a, keep)
            out = dest if dest is not None else ("t", self._new_temp())
            if out[0] == "t" and out[1] in self._free:
                self._free.remove(out[1])
            self.ops.append((ufunc, tuple(args), out))
            return out
        if dest is not None and ref != dest:
            self.ops.append((np.positive, (ref,), dest))
            return dest
        return ref


class NumpyKernel:
    """Runs a rule's update in place on NumPy buffers, chunk by chunk."""

    def __init__(self, rule: Rule, chunk: int = CHUNK, threads: int | None = None,
                 fold: bool = True):
        self.rule = rule
        self.fold = fold  # False keeps every operation (tests check folding is exact)
        self.chunk = int(chunk)
        self.threads = max(1, threads if threads is not None else (os.cpu_count() or 1))
        self._programs: dict[tuple, Program] = {}
        self._temps: list[list[np.ndarray]] = []
        self._pool = None

    def program(self, scalars: Mapping[str, float]) -> Program:
        fold = tuple(sorted((k, v) for k, v in scalars.items() if self.fold and v in (0.0, 1.0)))
        prog = self._programs.get(fold)
        if prog is None:
            prog = self._programs[fold] = Program(self.rule, dict(fold))
        return prog

    def _temps_for(self, worker: int, n_temps: int) -> list[np.ndarray]:
        while len(self._temps) <= worker:
            self._temps.append([])
        temps = self._temps[worker]
        while len(temps) < n_temps:
            temps.append(np.empty(self.chunk, dtype=np.float32))
        return temps[:n_temps]  # the plan's constant slots follow its own temps

    def _plan(self, prog: Program) -> tuple[list, list]:
        """``prog`` over one list of operands per chunk: the buffers' chunks
        first, then the temporaries, then the scalars and constants the ops
        read. Returns (plan, extra): plan lists (ufunc, operand slots, out
        slot); extra the ("s", name) and ("c", value) refs of the last slots."""
        names = self.rule.buffers
        slot = {("b", b): i for i, b in enumerate(names)}
        slot.update({("t", i): len(names) + i for i in range(prog.n_temps)})
        extra: list = []
        for _, args, _ in prog.ops:
            for r in args:
                if r[0] in "sc" and r not in slot:
                    slot[r] = len(names) + prog.n_temps + len(extra)
                    extra.append(r)
        return [(ufunc, [slot[r] for r in args], slot[out]) for ufunc, args, out in prog.ops], extra

    def __call__(self, buffers: Mapping[str, np.ndarray], scalars: Mapping[str, float], active=None) -> None:
        if active is not None and not active[0]:
            return  # a frozen run: no update
        prog = self.program(scalars)
        arrays = [buffers[b] for b in self.rule.buffers]
        n = arrays[0].shape[0]
        plan, extra = self._plan(prog)
        # This step's scalars and constants, float32 as the CUDA kernel receives them.
        consts = [np.float32(scalars[r[1]] if r[0] == "s" else r[1]) for r in extra]
        workers = self.threads if n * self.rule.bytes_per_param >= THREAD_MIN_BYTES else 1
        if workers == 1:
            self._run(plan, arrays, consts, 0, n, self._temps_for(0, prog.n_temps))
            return
        # Contiguous shares, cut on chunk boundaries so chunks stay aligned.
        per = -(-n // (workers * self.chunk)) * self.chunk
        self._in_threads([(self._run, plan, arrays, consts, lo, min(n, lo + per), self._temps_for(i, prog.n_temps))
                          for i, lo in enumerate(range(0, n, per))])

    def _in_threads(self, calls: list[tuple]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="optbench")
        for f in [self._pool.submit(*call) for call in calls]:
            f.result()

    def population(self, buffers: Mapping[str, np.ndarray], scalars: np.ndarray, active: np.ndarray) -> None:
        """Every active member's update, in place.

        buffers: (P, n) float32 arrays (rows may be strided views), row m
        member m's; scalars: the (P, k) float32 table, row m member m's
        scalars in ``rule.scalar_names`` order; active: (P,) flags, 0 skips a
        member (its rows are neither read nor written).

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
        if workers == 1:
            self._run_tiles(plan, arrays, operands, gather, tiles, prog.n_temps, 0)
            return
        share = -(-len(tiles) // workers)
        self._in_threads([(self._run_tiles, plan, arrays, operands, gather, tiles[i : i + share], prog.n_temps, w)
                          for w, i in enumerate(range(0, len(tiles), share))])

    def _run_tiles(self, plan, arrays, operands, gather, tiles, n_temps: int, worker: int) -> None:
        temps = self._temps_for(worker, n_temps + (len(arrays) if gather is not None else 0))
        written = [i for i, b in enumerate(self.rule.buffers) if b in self.rule.written]
        for j0, j1, c0, c1 in tiles:
            shape = (j1 - j0, c1 - c0)
            shaped = [t[: shape[0] * shape[1]].reshape(shape) for t in temps]
            if gather is None:
                env = [a[j0:j1, c0:c1] for a in arrays]
            else:
                idx, env = gather[j0:j1], shaped[n_temps:]
                for a, buf in zip(arrays, env):
                    np.take(a[:, c0:c1], idx, axis=0, out=buf, mode="clip")  # clip: no buffering of out
            env = env + shaped[:n_temps] + [o[j0:j1] if column else o for o, column in operands]
            for ufunc, args, out in plan:
                if len(args) == 2:
                    ufunc(env[args[0]], env[args[1]], out=env[out])
                else:
                    ufunc(env[args[0]], out=env[out])
            if gather is not None:
                for i in written:
                    arrays[i][idx, c0:c1] = env[i]

    def _run(self, plan, arrays, consts, lo: int, hi: int, temps) -> None:
        chunk = self.chunk
        for start in range(lo, hi, chunk):
            stop = min(hi, start + chunk)
            m = stop - start
            env = [a[start:stop] for a in arrays]
            env += temps if m == chunk else [t[:m] for t in temps]
            env += consts
            for ufunc, args, out in plan:
                if len(args) == 2:
                    ufunc(env[args[0]], env[args[1]], out=env[out])
                else:
                    ufunc(env[args[0]], out=env[out])
