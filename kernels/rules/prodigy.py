"""Prodigy (Mishchenko and Defazio 2024, "Prodigy: An Expeditiously
Adaptive Parameter-Free Learner"): Adam whose step size d is estimated from
the run, carried from step to step on the device.

.. math::
    \\nu := \\beta_3 \\nu + \\tfrac{d}{d_0} d\\eta \\langle L', w_0 - w \\rangle \\qquad
    s := \\beta_3 s + \\tfrac{d}{d_0} d\\eta L' \\\\
    m := \\gamma m + d(1-\\gamma) L' \\qquad v := \\alpha v + d^2 (1-\\alpha) L'^2 \\\\
    \\hat d = c\\, \\nu / \\lVert s \\rVert_1 \\qquad
    d := \\min(d_{max}, \\cdot)\\text{ of } \\max(d, \\hat d) \\qquad
    w := w (1 - d\\eta\\lambda) - d\\eta\\, m / (\\sqrt v + d' \\epsilon)

with d' the new estimate; the inner products and ||s||_1 are over the whole
model (``dot_all``, ``sum_all``), so nu, d and d_max are one number per run
(``carry``), never read back to the host. w_0 is a copy of the starting
weights (``init``). No step where ||s||_1 = 0. Symbols -> arguments: eta ->
``lr`` (1: d is the step), gamma, alpha -> ``gamma``, ``alpha`` (beta1,
beta2), beta_3 -> ``beta3`` (0: sqrt(alpha)), d_0 -> ``d0``, c ->
``d_coef``, ``growth`` (the largest factor d may grow by in a step; 1e30
stands for no limit), lambda -> ``wd`` (decoupled, at d eta: the rule decays
the weights itself). As pytorch_optimizer's Prodigy (no bias correction, no
safeguard warmup).
"""

import math

from ..peer import Peer
from ..rule import Rule


def scalars(hp, t):
    return {"lr": hp["lr"], "b1": hp["gamma"], "c1": 1.0 - hp["gamma"], "b2": hp["alpha"], "c2": 1.0 - hp["alpha"],
            "b3": hp["beta3"] or math.sqrt(hp["alpha"]), "d0": hp["d0"], "d_coef": hp["d_coef"],
            "growth": hp["growth"], "eps": hp["eps"], "wd": hp["wd"]}


RULE = Rule(
    name="prodigy",
    title="Prodigy",
    formula="nu := beta3 nu + (d/d0) d eta <L', w0 - w>;  s := beta3 s + (d/d0) d eta L';  "
            "m := gamma m + d (1 - gamma) L';  v := alpha v + d^2 (1 - alpha) L'^2;  "
            "d := min(d_max, max(d, d_coef nu / ||s||_1));  w := w (1 - d eta wd) - d eta m / (sqrt(v) + d eps)",
    year=2023,
    lr_centre=1.0,
    decoupled=False,
    peer=Peer("pytorch_optimizer", lambda hp: None if hp["l2"] else (
        "Prodigy", {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"]), "beta3": hp["beta3"] or None,
                    "d0": hp["d0"], "d_coef": hp["d_coef"], "growth_rate": hp["growth"] if hp["growth"] < 1e30
                    else float("inf"), "weight_decay": hp["wd"], "weight_decouple": True, "eps": hp["eps"],
                    "foreach": False}),
        state={"m": ("exp_avg", 1.0), "v": ("exp_avg_sq", 1.0), "s": ("s", 1.0)}),
    peer_note="exactly pytorch_optimizer.Prodigy(lr=lr, betas=(gamma, alpha), beta3=beta3, d0=d0, d_coef=d_coef, "
              "growth_rate=growth, eps=eps, weight_decay=wd)",
    hyper={"lr": 1.0, "gamma": 0.9, "alpha": 0.999, "beta3": 0.0, "d0": 1e-6, "d_coef": 1.0, "growth": 1e30,
           "eps": 1e-8, "wd": 0.0},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "beta3": "[0, 1)", "d0": "(0, inf)",
            "d_coef": "(0, inf)", "growth": "[1, inf)", "eps": "(0, inf)", "wd": "[0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "beta_3": "beta3", "d_0": "d0", "lambda": "wd"},
    # d's first estimates divide <L', w0 - w> -- w0 - w a difference of float32
    # numbers a few ulp apart while d is 1e-6 -- by ||s||_1: on a few elements
    # float32 storage moves d by percent where float64 does not (the peer's
    # float32 moves it the same way; the conformance tests hold us to 1e-5 of it).
    tolerance=2e-2,
    tolerance_note="d's first estimates rest on w0 - w, float32 numbers a few ulp apart: on a handful of "
                   "elements float32 storage moves d by percent, as it does the peer's",
    state=("m", "v", "s", "p0"),
    init={"p0": "w"},
    carry={"d": "d0", "dmax": "d0", "nu": 0.0},
    scalars=scalars,
    update="""
        dlr = d * lr
        nu = b3 * nu + (d / d0) * dlr * dot_all(g, p0 - w)
        s = b3 * s + (d / d0) * dlr * g
        den = sum_all(abs(s))
        m = b1 * m + d * c1 * g
        v = b2 * v + d * d * c2 * (g * g)
        dhat = d_coef * nu / den
        dmax = where(den > 0, max(dmax, dhat), dmax)
        dnew = where(d == d0, max(d, dhat), d)
        d = where(den > 0, min(dmax, dnew * growth), d)
        w = where(den > 0, w * (1 - dlr * wd) - dlr * m / (sqrt(v) + d * eps), w)
    """,
    # pass 1 reads w, g, s, p0, writes w0 - w and |s|; pass 2 reads w, g, m, v, s, p0, writes w, m, v, s
    bytes_per_param=68,
)
