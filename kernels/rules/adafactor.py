"""Adafactor (Shazeer and Stern 2018, "Adafactor: Adaptive Learning Rates
with Sublinear Memory Cost"): the second moment of a weight matrix kept as
its row and column averages.

.. math::
    u = L'^2 + \\epsilon_1 \\qquad
    R := R + (1-\\beta_{2,t})(\\mathrm{rowmean}(u) - R) \\qquad
    C := C + (1-\\beta_{2,t})(\\mathrm{colmean}(u) - C) \\\\
    d = L' / \\sqrt{R_i C_j / \\mathrm{mean}(R)} \\qquad
    \\eta_t = \\max(\\epsilon_2, \\mathrm{RMS}(w))\\, \\eta \\qquad
    s = \\eta_t\\, d / \\max(1, \\mathrm{RMS}(d) / c) \\\\
    m := m + (1-\\gamma)(s - m) \\qquad w := w (1 - \\eta_t \\lambda) - m

with beta_{2,t} = min(alpha, 1 - t^decay_rate), per tensor (a bias is a
1 x n matrix: its "factored" moment is the average itself). The state is
R and C (rows + cols numbers per matrix: ``rowstate``, ``colstate``) and
the momentum m. Symbols -> arguments: eta -> ``lr`` (the relative step:
scaled by the weights' RMS), gamma -> ``gamma`` (beta1), alpha ->
``alpha`` (the cap of beta2), ``decay_rate`` (-0.8), epsilon_1 -> ``eps1``,
epsilon_2 -> ``eps2``, c -> ``clip``, lambda -> ``wd`` (decoupled, with
the tensor's eta_t: the rule decays the weights itself). As
pytorch_optimizer's AdaFactor with relative_step off and scale_parameter
on; the conformance tests run it with float32 momentum.
"""

from ..peer import Peer
from ..rule import Rule


def scalars(hp, t):
    beta2 = min(hp["alpha"], 1.0 - t ** hp["decay_rate"])
    return {"lr": hp["lr"], "one_minus_gamma": 1.0 - hp["gamma"], "c2": 1.0 - beta2, "eps1": hp["eps1"],
            "eps2": hp["eps2"], "clip": hp["clip"], "wd": hp["wd"]}


def _peer(hp):
    if hp["l2"]:
        return None
    import torch

    return "AdaFactor", {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"]), "decay_rate": hp["decay_rate"],
                         "weight_decay": hp["wd"], "weight_decouple": True, "clip_threshold": hp["clip"],
                         "scale_parameter": True, "relative_step": False, "warmup_init": False,
                         "eps1": hp["eps1"], "eps2": hp["eps2"], "momentum_dtype": torch.float32, "foreach": False}


RULE = Rule(
    name="adafactor",
    title="Adafactor",
    formula="R, C := running row and column means of L'^2 + eps1 (beta2_t = min(alpha, 1 - t^decay_rate));  "
            "d = L' / sqrt(R C / mean(R));  eta_t = max(eps2, RMS(w)) eta;  s = eta_t d / max(1, RMS(d) / clip);  "
            "m := m + (1 - gamma)(s - m);  w := w (1 - eta_t wd) - m  (per tensor)",
    year=2018,
    lr_centre=0.01,
    decoupled=False,
    peer=Peer("pytorch_optimizer", _peer, state={"m": ("exp_avg", 1.0)}),
    peer_note="exactly pytorch_optimizer.AdaFactor(lr=lr, betas=(gamma, alpha), decay_rate=decay_rate, "
              "clip_threshold=clip, eps1=eps1, eps2=eps2, weight_decay=wd, relative_step=False, "
              "scale_parameter=True, momentum_dtype=float32)",
    hyper={"lr": 1e-3, "gamma": 0.9, "alpha": 0.999, "decay_rate": -0.8, "eps1": 1e-30, "eps2": 1e-3,
           "clip": 1.0, "wd": 0.0},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "decay_rate": "[-1, 0)",
            "eps1": "(0, inf)", "eps2": "[0, inf)", "clip": "(0, inf)", "wd": "[0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon_1": "eps1", "epsilon_2": "eps2",
             "c": "clip", "lambda": "wd"},
    state=("m",),
    rowstate=("vr",),
    colstate=("vc",),
    scalars=scalars,
    update="""
        u = g * g + eps1
        vr = vr + c2 * (rowmean(u) - vr)
        vc = vc + c2 * (colmean(u) - vc)
        d = g / sqrt(vr * vc / mean(vr))
        step = max(eps2, norm(w) / sqrt(size)) * lr
        s = d / max(1, norm(d) / sqrt(size) / clip) * step
        m = m + one_minus_gamma * (s - m)
        w = w * (1 - step * wd) - m
    """,
    # three passes: g -> u; g and the expanded R, C, mean(R) -> d; w, g, m and
    # the expanded R, C, mean(R), step, clip factor -> w, m (plus the norms' reads)
    bytes_per_param=84,
)
