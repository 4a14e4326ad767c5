"""The rules beyond torch.optim against the libraries users trust for them.

Each built-in rule whose ``Rule.peer`` names pytorch_optimizer or
schedulefree (LAMB, LARS, Adafactor, Muon, Prodigy, schedule-free AdamW,
AdEMAMix, ADOPT, Cautious AdamW) runs beside that library's optimiser for
STEPS steps, on the same float32 parameters of an MLP's tensors and the
same random gradients. Every tensor is one peer parameter, a weight matrix
as a torch Linear stores it ((fan_out, fan_in): our view transposed), so
per-tensor norms, row/column statistics, Muon's matrices and its
hidden-layer recipe are all compared. After the last step every parameter
must be within TOLERANCE of the peer's (kernels.validate.rel_err, relative
to the tensor's scale). Cautious AdamW's mask [m g > 0] may flip where m g
is within rounding of 0, which changes its tensor's scale by a few percent
for that step: such a step is counted (at most 2 in STEPS) and both sides
continue from the peer's numbers.

The peers are the optional ``compare`` extra (``pip install
'optbench[compare]'``): where one is missing its cases skip and say so.
pytorch_optimizer's Muon runs Newton-Schulz in bfloat16; here its function
is given float32, as ours runs (bfloat16 alone moves the result by 1e-2).
"""

from __future__ import annotations

import functools
import importlib

import numpy as np
import pytest

from optbench.kernels import RULES, FlatLayout, Optimizer
from optbench.kernels.rules import BUILTIN
from optbench.kernels.validate import rel_err
from optbench.kernels.views import views_of

STEPS = 200
TOLERANCE = 1e-5
LAYOUT = FlatLayout([("W1", (24, 16)), ("b1", (16,)), ("W2", (16, 12)), ("b2", (12,)), ("W3", (12, 5)),
                     ("b3", (5,))])
PEERED = [name for name in BUILTIN if RULES[name].peer is not None
          and RULES[name].peer.library in ("pytorch_optimizer", "schedulefree")]
#: Hyper-parameters moved off their defaults where a default would hide an
#: ignored argument, and lrs that move the weights visibly in STEPS steps.
MOVED = {
    "lamb": {"lr": 0.01, "gamma": 0.8, "alpha": 0.99},
    "lars": {"lr": 0.5, "gamma": 0.8, "eta": 0.01, "beta": 0.001},
    "adafactor": {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "decay_rate": -0.7, "clip": 0.5},
    "muon": {"lr": 0.01, "gamma": 0.9, "adam_lr": 1e-3, "beta1": 0.8, "beta2": 0.99},
    "prodigy": {"lr": 0.5, "gamma": 0.8, "alpha": 0.99, "beta3": 0.9},
    "schedule_free_adamw": {"lr": 0.005, "gamma": 0.8, "alpha": 0.99, "warmup": 10.0},
    "ademamix": {"lr": 0.002, "gamma": 0.8, "alpha": 0.99, "beta3": 0.999, "mix": 3.0, "T": 50.0},
    "adopt": {"lr": 0.002, "gamma": 0.8, "alpha": 0.99},
    "cautious_adamw": {"lr": 0.002, "gamma": 0.8, "alpha": 0.99},
}


def test_every_rule_with_such_a_peer_has_a_case():
    assert set(PEERED) == set(MOVED)


def peer_library(name: str):
    library = RULES[name].peer.library
    try:
        return importlib.import_module(library)
    except ImportError:
        pytest.skip(f"{library} is not installed: pip install 'optbench[compare]' to compare {name} with it")


def to_torch(torch, flat: np.ndarray, view) -> "torch.Tensor":
    a = flat[view.offset : view.offset + view.size].reshape(view.shape)
    return torch.from_numpy(np.ascontiguousarray(a.T if a.ndim == 2 else a))


@pytest.mark.parametrize("form", ["plain", "wd"])
@pytest.mark.parametrize("name", PEERED)
def test_rule_matches_its_peer(name, form, monkeypatch):
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install 'optbench[compare]'")
    peer_library(name)
    if name == "muon":
        import pytorch_optimizer.optimizer.muon.base as muon_base

        monkeypatch.setattr(muon_base, "zero_power_via_newton_schulz_5",
                            functools.partial(muon_base.zero_power_via_newton_schulz_5, dtype=torch.float32))
    rule = RULES[name]
    hp = rule.resolve({**MOVED[name], **({"wd": 0.01} if form == "wd" else {})})
    views = views_of(LAYOUT, LAYOUT.size, rule.matrices, np)
    rng = np.random.default_rng(7)
    inside = np.zeros(LAYOUT.size, bool)
    for v in views.views:
        inside[v.offset : v.offset + v.size] = True
    w0 = (rng.standard_normal(LAYOUT.size) * 0.5 * inside).astype(np.float32)

    params = [torch.nn.Parameter(to_torch(torch, w0, v).clone()) for v in views.views]
    theirs = rule.peer.build(params, hp, matrices=[bool(m) for m in views.is_matrix], foreach=False)
    if theirs is None:
        pytest.skip(f"{name}'s peer has no exact form for {form}")
    ours = Optimizer(rule, w0.copy(), layout=LAYOUT, **hp)
    flips = 0
    for _ in range(STEPS):
        g = (rng.standard_normal(LAYOUT.size) * inside).astype(np.float32)
        for p, v in zip(params, views.views):
            p.grad = to_torch(torch, g, v).clone()
        theirs.step()
        ours.step(g.copy())
        if name == "cautious_adamw" and cautious_masks_differ(ours, theirs, params, views, g):
            flips += 1  # m g within rounding of 0: the tensor's mask count, so its scale, differs
            resync(ours, theirs, params, views)
    assert flips <= 2, f"{name}: {flips} mask flips in {STEPS} steps"
    for p, v in zip(params, views.views):
        got = ours.params[v.offset : v.offset + v.size].reshape(v.shape)
        want = p.detach().numpy()
        want = want.T if want.ndim == 2 else want
        err = rel_err(got, want.astype(np.float64))
        assert err <= TOLERANCE, f"{name} {form}: {v.name} differs from {rule.peer.library}'s by {err:.2e}"
        assert not np.array_equal(got, w0[v.offset : v.offset + v.size].reshape(v.shape)), f"{v.name} never moved"


def cautious_masks_differ(ours, theirs, params, views, g) -> bool:
    """Whether Cautious AdamW's mask [m g > 0] differs from the peer's this step."""
    for p, v in zip(params, views.views):
        m = ours.state["m"][v.offset : v.offset + v.size].reshape(v.shape)
        mt = theirs.state[p]["exp_avg"].numpy()
        mt = mt.T if mt.ndim == 2 else mt
        gv = g[v.offset : v.offset + v.size].reshape(v.shape)
        if not np.array_equal(m * gv > 0, mt * gv > 0):
            return True
    return False


def resync(ours, theirs, params, views) -> None:
    """Our parameters and state := the peer's (after a counted rounding flip)."""
    for p, v in zip(params, views.views):
        for mine, (key, factor) in [("w", (None, 1.0)), *ours.rule.peer.state.items()]:
            src = p.detach() if key is None else theirs.state[p][key]
            a = src.numpy() * factor
            target = ours.params if mine == "w" else ours.state[mine]
            target[v.offset : v.offset + v.size] = (a.T if a.ndim == 2 else a).reshape(-1)
