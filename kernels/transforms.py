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
  state at exactly 0 (Optimal Brain Damage).

The registry (:mod:`kernels.rules`) gives every rule both L2 forms:
``coupled_l2(decoupled_decay(rule))``. A zero coefficient costs nothing on
NumPy, where scalars that are 0 or 1 in a step are folded out of the program.
Transforms are cached, so a rule's transform is one object (one compiled
kernel) however often it is asked for.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from .rule import Rule, RuleError, dedent


def _with(rule: Rule, hyper: dict, symbols: dict, extra_scalars, prologue: str = "", tail: str = "",
          **changes) -> Rule:
    # A coefficient of L2 or decay is >= 0: a negative one grows the weights.
    ranges = {**rule.ranges, **{k: "[0, inf)" for k in hyper}}
    clash = set(hyper) & set(rule.hyper)
    if clash:
        raise RuleError(f"rule {rule.name!r} already has hyper-parameter(s) {sorted(clash)}")
    inner = rule.scalars

    def scalars(hp, t):
        return {**inner(hp, t), **extra_scalars(hp)}

    return replace(rule, hyper={**rule.hyper, **hyper}, symbols={**rule.symbols, **symbols}, ranges=ranges,
                   scalars=scalars, update=prologue + dedent(rule.update) + tail, **changes)


@cache
def coupled_l2(rule: Rule) -> Rule:
    """L' := L' + l2 * w before the rule's update (``l2`` = lambda, default 0)."""
    return _with(rule, {"l2": 0.0}, {"lambda (coupled)": "l2"}, lambda hp: {"l2": hp["l2"]},
                 prologue="g = g + l2 * w\n")


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
                     lambda hp: {"decay": 1.0 - hp["lr"] * hp["wd"]}, prologue="w = decay * w\n")
    return _with(rule, {"wd": 0.0}, {"lambda (decoupled)": "wd"},
                 lambda hp: {"decay": 1.0 - hp["lr"] * hp["wd"], "lr_wd": hp["lr"] * hp["wd"]},
                 prologue=f"w = decay * w - lr_wd * ({rule.lookahead})\n")


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
