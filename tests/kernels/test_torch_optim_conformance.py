"""Our rules against torch.optim, under the exact mappings each rule declares.

Each rule that names a peer in torch.optim (``Rule.peer``, a
:class:`optbench.kernels.peer.Peer` written once in the rule's module: the
class and arguments for our resolved hyper-parameters, l2 and wd included,
and how the two states correspond) is run beside it on the same float32
parameters and the same sequence of random gradients (STEPS steps), and the
parameters -- and, where the mapping says how, the state -- are compared
after every step. Each rule runs with hyper-parameters moved off their
defaults (an ignored argument shows), plain, with coupled ``l2`` and with
decoupled ``wd`` wherever its peer has an exact form for them. The mappings
are mathematically exact: the two compute the same real numbers and differ
only in float32 rounding (torch writes the same formulas with fused forms
such as lerp, addcmul, addcdiv and add(alpha=...), and keeps NAdam's
momentum product in a float32 tensor).

A rule without an exact torch.optim peer says why in its ``peer_note``
(AdaDelta: torch puts eps inside both roots; Lion and AdaBelief: torch.optim
has neither); ``test_every_builtin_has_a_peer_or_says_why_not`` holds them
to it.

Tolerance. The error of a buffer is kernels.validate.rel_err (max |x - r| /
(|r| + rms(r))), and the tolerance the validation's 64 ulp per step times
STEPS (1.5e-4 for 20 steps). The observed errors are a few ulp, 1e-7 to
1e-6; a wrong mapping -- a missing (1 - gamma) factor, coupled decay for
decoupled, swapped betas, the weights instead of the look-ahead point --
gives errors of 1e-3 and more, and ``test_wrong_mappings_exceed_the_tolerance``
checks that it does.

The six rules beyond the lecture are tested once registered; until then
each of their cases is skipped ("rule not registered yet").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from optbench.kernels import RULES, Optimizer
from optbench.kernels.rules import BUILTIN
from optbench.kernels.validate import TOLERANCE_PER_STEP, rel_err

STEPS = 20
N = 1000
TOLERANCE = TOLERANCE_PER_STEP * STEPS


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@dataclass(frozen=True)
class Case:
    id: str
    rule: str
    #: our hyper-parameters
    ours: dict
    #: the torch.optim class and its arguments
    torch_class: str
    torch_args: dict
    #: our state name -> (torch state key, c): ours = c * torch's
    state: dict = field(default_factory=dict)


G, A, EPS = 0.8, 0.99, 1e-6  # non-default constants, so that an ignored argument shows
ADAM = {"lr": 0.01, "gamma": G, "alpha": A, "eps": EPS}
TORCH_ADAM = {"lr": 0.01, "betas": (G, A), "eps": EPS}


def moved(rule) -> dict:
    """Every hyper-parameter of ``rule`` (but l2 and wd) off its default."""
    hp = {}
    for key, default in rule.hyper.items():
        if key in ("l2", "wd"):
            continue
        hp[key] = G if key == "gamma" else A if key == "alpha" else EPS if key == "eps" else default * 5
    return hp


def peer_cases() -> list[Case]:
    """Per rule with an exact torch.optim peer: plain, +l2, +wd, where the peer has the form."""
    cases = []
    for name in BUILTIN:
        rule = RULES[name]
        peer = rule.peer
        if peer is None or not peer.exact or peer.library != "torch.optim":
            continue
        for variant, extra in (("", {}), ("-l2", {"l2": 0.1}), ("-wd", {"wd": 0.1})):
            ours = {**moved(rule), **extra}
            hp = rule.resolve(ours)
            made = peer.make(hp)
            if made is None:
                continue
            cls, args = made
            state = {k: (key, peer.factor(k, hp)) for k, (key, _) in peer.state.items()}
            cases.append(Case(name + variant, name, ours, cls, args, state))
    return cases


CASES = peer_cases()

#: Mappings that are wrong on purpose, each by one of the mistakes the test
#: above must catch.
WRONG = [
    Case("momentum-without-(1-gamma)", "momentum", {"lr": 0.05, "gamma": G}, "SGD",
         {"lr": 0.05, "momentum": G, "dampening": 0}),
    Case("momentum-with-dampening", "momentum", {"lr": 0.05, "gamma": G}, "SGD",
         {"lr": 0.05, "momentum": G, "dampening": G}),
    Case("nesterov-as-plain-momentum", "nesterov", {"lr": 0.05, "gamma": G}, "SGD",
         {"lr": 0.05 * (1 - G), "momentum": G, "dampening": 0}),
    Case("adam-betas-swapped", "adam", ADAM, "Adam", {**TORCH_ADAM, "betas": (A, G)}),
    Case("adam-wd-as-coupled", "adam", {**ADAM, "wd": 0.1}, "Adam", {**TORCH_ADAM, "weight_decay": 0.1}),
    Case("adam-l2-as-decoupled", "adam", {**ADAM, "l2": 0.1}, "AdamW", {**TORCH_ADAM, "weight_decay": 0.1}),
    Case("rmsprop-centered", "rmsprop", {"lr": 0.01, "gamma": 0.95, "eps": EPS}, "RMSprop",
         {"lr": 0.01, "alpha": 0.95, "eps": EPS, "centered": True}),
]


def run(torch, case: Case, steps: int = STEPS, seed: int = 0):
    """Yield (t, errors by buffer) after each step: our kernel against torch."""
    if case.rule not in RULES:
        pytest.skip("rule not registered yet")
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(N).astype(np.float32)
    ours = Optimizer(case.rule, w0.copy(), backend="numpy", **case.ours)
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    theirs = getattr(torch.optim, case.torch_class)([p], **case.torch_args)
    for t in range(1, steps + 1):
        g = rng.standard_normal(N).astype(np.float32)
        ours.step(g)
        p.grad = torch.from_numpy(g.copy())
        theirs.step()
        errs = {"w": rel_err(ours.params, p.detach().numpy().astype(np.float64))}
        for name, (key, c) in case.state.items():
            if name in ours.state:  # a rule's state under another name is compared through w only
                ref = c * theirs.state[p][key].numpy().astype(np.float64)
                errs[name] = rel_err(ours.state[name], ref)
        yield t, errs


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matches_torch_optim(torch, case):
    for t, errs in run(torch, case):
        for buf, err in errs.items():
            assert err <= TOLERANCE, f"{case.id} step {t}, buffer {buf}: rel err {err:.2e} > {TOLERANCE:.1e}"


@pytest.mark.parametrize("case", WRONG, ids=[c.id for c in WRONG])
def test_wrong_mappings_exceed_the_tolerance(torch, case):
    """The tolerance is tight enough to tell a wrong mapping from rounding:
    each of these is off by far more (10 x the tolerance; observed 100 x and more)."""
    worst = max(errs["w"] for _, errs in run(torch, case))
    assert worst > 10 * TOLERANCE, f"{case.id}: rel err {worst:.2e} would pass as rounding"


def test_every_builtin_has_a_peer_or_says_why_not():
    """A built-in rule names an exact peer (torch.optim's: then it has cases
    above, the plain one at least; another library's: its note names it) or
    says in its peer_note why there is none."""
    mapped = {c.rule for c in CASES}
    for name in BUILTIN:
        rule = RULES[name]
        assert rule.peer_note, f"{name}: no peer_note"
        if rule.peer is not None and rule.peer.exact and rule.peer.library == "torch.optim":
            assert name in mapped and name in {c.id for c in CASES}, name
        elif rule.peer is not None and rule.peer.exact:  # another library's: test_peer_conformance.py
            assert name not in mapped and rule.peer.library in rule.peer_note, name
        else:
            assert name not in mapped and "none" in rule.peer_note, name


def test_the_cases_cover_l2_and_wd_where_torch_has_them():
    ids = {c.id for c in CASES}
    assert {"adam", "adam-l2", "adam-wd", "sgd-l2", "nadam-wd", "amsgrad-wd", "nesterov-l2"} <= ids
    assert "sgd-wd" not in ids  # torch's SGD has no decoupled decay
