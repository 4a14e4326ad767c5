"""Transforms of a rule: the same maths with one more thing applied, still one launch.

Each takes a :class:`~kernels.rule.Rule` and returns a new rule whose update
text is the old one with a few statements added, so every generator (NumPy,
CUDA, Numba) compiles it like any other rule:

* :func:`coupled_l2` -- L2 added to the gradient, L' := L' + lambda w (the
  gradient of lambda/2 ||w||^2; the lecture's Q~ = Q + lambda sum w^2 has
  gradient L' + 2 lambda w, so its lambda is ``l2 / 2`` here);
* :func:`decoupled_decay` -- w := w (1 - eta lambda_wd) before the rule's own
  step (the lecture's dropout slide, AdamW's decay);
* :func:`masked` -- a 0/1 ``mask`` buffer holding pruned weights and their
  state at exactly 0 (Optimal Brain Damage);
* :func:`decay_masked` -- a 0/1 ``decay_mask`` buffer saying where the L2 and
  decay of the two transforms above apply (per-group settings on the flat
  layout, as optax's ``mask`` or PyTorch's parameter groups: no decay on
  biases and PReLU alphas); :func:`decay_mask` builds it from a layout.

The registry (:mod:`kernels.rules`) gives every rule both L2 forms:
``coupled_l2(decoupled_decay(rule))``. A zero coefficient costs nothing on
NumPy, where scalars that are 0 or 1 in a step are folded out of the program.
Transforms are cached, so a rule's transform is one object (one compiled
kernel) however often it is asked for.
"""

from __future__ import annotations

import ast
from dataclasses import replace
from functools import cache
from typing import Callable, Collection

import numpy as np

from .flat import FlatBuffer, FlatLayout
from .rule import Rule, RuleError, dedent, takes_run

#: The prologue lines coupled_l2 and decoupled_decay write (decay_masked finds them).
_L2_LINE = "g = g + l2 * w"
_DECAY_LINE = "w = decay * w"


def _with(rule: Rule, hyper: dict, symbols: dict, extra_scalars, prologue: str = "", tail: str = "",
          **changes) -> Rule:
    # A coefficient of L2 or decay is >= 0: a negative one grows the weights.
    ranges = {**rule.ranges, **{k: "[0, inf)" for k in hyper}}
    clash = set(hyper) & set(rule.hyper)
    if clash:
        raise RuleError(f"rule {rule.name!r} already has hyper-parameter(s) {sorted(clash)}")
    inner = rule.scalars

    if takes_run(inner):  # the same signature as the rule's own (takes_run tells them apart)
        def scalars(hp, t, run):
            return {**inner(hp, t, run), **extra_scalars(hp)}
    else:
        def scalars(hp, t):
            return {**inner(hp, t), **extra_scalars(hp)}

    return replace(rule, hyper={**rule.hyper, **hyper}, symbols={**rule.symbols, **symbols}, ranges=ranges,
                   scalars=scalars, update=prologue + dedent(rule.update) + tail, **changes)


@cache
def coupled_l2(rule: Rule) -> Rule:
    """L' := L' + l2 * w before the rule's update (``l2`` = lambda, default 0)."""
    return _with(rule, {"l2": 0.0}, {"lambda (coupled)": "l2"}, lambda hp: {"l2": hp["l2"]},
                 prologue=_L2_LINE + "\n")


@cache
def decoupled_decay(rule: Rule) -> Rule:
    """w := w (1 - eta wd) before the rule's update (``wd`` = lambda, default 0).

    The decay applies to the weights. For a rule that stores a look-ahead
    point u = w - offset (Nesterov), decaying w and mapping back gives
    u := (1 - eta wd) u - eta wd * offset, which is what the prologue does.
    """
    if "lr" not in rule.hyper:
        raise RuleError(f"rule {rule.name!r}: decoupled decay needs a learning rate 'lr'")
    if rule.lookahead is None:
        return _with(rule, {"wd": 0.0}, {"lambda (decoupled)": "wd"},
                     lambda hp: {"decay": 1.0 - hp["lr"] * hp["wd"]}, prologue=_DECAY_LINE + "\n")
    return _with(rule, {"wd": 0.0}, {"lambda (decoupled)": "wd"},
                 lambda hp: {"decay": 1.0 - hp["lr"] * hp["wd"], "lr_wd": hp["lr"] * hp["wd"]},
                 prologue=f"{_lookahead_decay_line(rule.lookahead)}\n")


def _lookahead_decay_line(lookahead: str) -> str:
    return f"{_DECAY_LINE} - lr_wd * ({lookahead})"


@cache
def masked(rule: Rule) -> Rule:
    """The rule with a 0/1 ``mask`` buffer applied inside the update.

    w, state := mask * rule(w, state), in the same single pass: a pruned
    weight (mask 0) and its state stay exactly 0 through every later step,
    whatever its gradient does (so Nesterov's w = u + eta gamma v is 0 too),
    and the update is still one launch over the flat buffer (Optimal Brain
    Damage's pruned connections, lecture section 11).
    """
    tail = "".join(f"{b} = {b} * mask\n" for b in ("w",) + rule.state)
    return replace(rule, name=f"{rule.name}_masked", title=f"{rule.title} (masked)",
                   inputs=rule.inputs + ("mask",), update=dedent(rule.update) + tail,
                   bytes_per_param=rule.bytes_per_param + 4)


class _OwnDecay(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == "wd" and isinstance(node.ctx, ast.Load):
            return ast.parse("(decay_mask * wd)", mode="eval").body
        return node


def _mask_own_decay(line: str) -> str:
    """``line`` reading ``decay_mask * wd`` for ``wd`` (0 * wd is an exact
    0, so a masked element steps bit for bit as with wd = 0)."""
    return ast.unparse(_OwnDecay().visit(ast.parse(line)))


def _normal(line: str) -> str:
    """A statement in one spelling (spaces and redundant parentheses aside)."""
    return ast.unparse(ast.parse(line.strip()))


@cache
def decay_masked(rule: Rule) -> Rule:
    """The rule with its L2 and decoupled decay applied only where a read-only
    ``decay_mask`` buffer is 1 (0 elsewhere), in the same single launch.

    The prologue lines of :func:`coupled_l2` and :func:`decoupled_decay` are
    rewritten (the rest of the update is untouched, so this composes with
    :func:`masked` in either order):

    * coupled: ``g = g + l2 * (decay_mask * w)``;
    * decoupled: ``w = (decay_mask * decay + (1 - decay_mask)) * w``, and for
      a rule with a look-ahead point (Nesterov) its look-ahead term is masked
      too: ``... - lr_wd * (decay_mask * (lookahead))``;
    * a rule that decays the weights itself (``decoupled=False``: Adafactor,
      Prodigy, schedule-free AdamW) reads ``decay_mask * wd`` wherever its
      text reads ``wd``.

    For a mask of exact 0s and 1s every element gets, bit for bit, either the
    unmasked rule's result (mask 1: ``1 * x`` and ``x + 0`` are exact) or
    that of the rule with l2 = wd = 0 (mask 0). A value between 0 and 1 is a
    partial decay.
    """
    if "decay_mask" in rule.inputs:
        return rule
    lookahead = None if rule.lookahead is None else _normal(_lookahead_decay_line(rule.lookahead))
    swaps = {_normal(_L2_LINE): "g = g + l2 * (decay_mask * w)",
             _normal(_DECAY_LINE): "w = (decay_mask * decay + (1 - decay_mask)) * w"}
    if lookahead is not None:
        swaps[lookahead] = (f"w = (decay_mask * decay + (1 - decay_mask)) * w"
                            f" - lr_wd * (decay_mask * ({rule.lookahead}))")
    lines, found = [], 0
    for line in dedent(rule.update).splitlines():
        key = _normal(line) if line.strip() else ""
        if key in swaps:
            line, found = swaps.pop(key), found + 1
        elif not rule.decoupled and key:
            masked_line = _mask_own_decay(key)
            line, found = masked_line, found + (masked_line != key)
        lines.append(line)
    if not found:
        raise RuleError(f"rule {rule.name!r} has no L2 or decoupled decay to mask "
                        "(apply kernels.transforms.coupled_l2 / decoupled_decay first)")
    return replace(rule, name=f"{rule.name}_decay_masked", title=f"{rule.title} (decay masked)",
                   inputs=rule.inputs + ("decay_mask",), update="\n".join(lines) + "\n",
                   bytes_per_param=rule.bytes_per_param + 4)


def decay_mask(layout: FlatLayout, decayed: Collection[str] | Callable[[str], bool], xp=np) -> FlatBuffer:
    """A float32 buffer of ``layout`` that is 1.0 on the views that decay and
    0.0 elsewhere (the padding between views included), for
    :func:`decay_masked`'s ``decay_mask``. ``decayed``: the views' names, or
    a predicate on a name (an MLP's weight matrices: ``lambda n: n.startswith("W")``)."""
    wanted = decayed if callable(decayed) else set(decayed).__contains__
    if not callable(decayed):
        unknown = sorted(set(decayed) - {s.name for s in layout})
        if unknown:
            raise KeyError(f"no tensor {unknown[0]!r} in layout; have {[s.name for s in layout]}")
    host = np.zeros(layout.size, dtype=np.float32)
    for slot in layout:
        if wanted(slot.name):
            host[slot.offset : slot.offset + slot.size] = 1.0
    return FlatBuffer(layout, host if xp is np else xp.asarray(host))
