"""Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers"):
Nesterov momentum, orthogonalised per weight matrix by Newton-Schulz.

.. math::
    b := b + (1-\\gamma)(L' - b) \\qquad n = L' + \\gamma (b - L') \\qquad
    O = \\mathrm{NS}_5(n) \\\\
    w := w - \\eta \\sqrt{\\max(1, \\text{fan\\_out} / \\text{fan\\_in})}\\, O

for the hidden weight matrices (``matrices="hidden"``: Muon's recipe),
where NS_5 is five steps of the quintic X := aX + (bA + cA^2)X, A = XX^T,
(a, b, c) = (3.4445, -4.7750, 2.0315), from X = n / ||n||_F: all the
matrices of one shape and every member of a population in one batch of
products (:meth:`optbench.kernels.views.Views.orthogonalize`). Every other
tensor -- the biases, the first and the last layer -- takes AdamW with its
own ``adam_lr``, ``beta1``, ``beta2``, ``eps``. Decoupled decay ``wd``
applies to all, at the Muon lr. As pytorch_optimizer's Muon (Nesterov, 5
steps, Keller Jordan's lr adjustment); its Newton-Schulz runs in bfloat16,
ours in float32 (the conformance tests run the peer's in float32 too).
"""

import math

from ..peer import Peer
from ..rule import Rule


def scalars(hp, t):
    return {"lr": hp["lr"], "gamma": hp["gamma"], "one_minus_gamma": 1.0 - hp["gamma"],
            "one_minus_beta1": 1.0 - hp["beta1"], "one_minus_beta2": 1.0 - hp["beta2"],
            "adam_lr_c1": hp["adam_lr"] / (1.0 - hp["beta1"] ** t),
            "inv_sq_c2": 1.0 / math.sqrt(1.0 - hp["beta2"] ** t), "eps": hp["eps"]}


def _groups(params, hp):
    wd = hp["wd"]
    return [{"params": [p for p, matrix in params if matrix], "use_muon": True, "lr": hp["lr"],
             "momentum": hp["gamma"], "nesterov": True, "weight_decay": wd, "ns_steps": 5},
            {"params": [p for p, matrix in params if not matrix], "use_muon": False, "lr": hp["adam_lr"],
             "betas": (hp["beta1"], hp["beta2"]), "eps": hp["eps"], "weight_decay": hp["lr"] * wd / hp["adam_lr"]}]


RULE = Rule(
    name="muon",
    title="Muon",
    formula="b := b + (1 - gamma)(L' - b);  w := w - eta sqrt(max(1, fan_out / fan_in)) NS5(L' + gamma (b - L')) "
            "(hidden weight matrices);  AdamW(adam_lr, beta1, beta2, eps) elsewhere",
    year=2024,
    lr_centre=0.02,
    matrices="hidden",
    peer=Peer("pytorch_optimizer", lambda hp: None if hp["l2"] else ("Muon", {"foreach": False}),
              state={"buf": ("momentum_buffer", 1.0)}, groups=_groups),
    peer_note="exactly pytorch_optimizer.Muon with use_muon groups for the hidden weight matrices "
              "(lr, momentum=gamma, nesterov, ns_steps=5, weight_decay=wd) and AdamW groups for the rest "
              "(adam_lr, betas=(beta1, beta2), eps, weight_decay=lr wd / adam_lr), its Newton-Schulz in float32",
    hyper={"lr": 0.02, "gamma": 0.95, "adam_lr": 3e-4, "beta1": 0.9, "beta2": 0.95, "eps": 1e-10},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "adam_lr": "(0, inf)", "beta1": "[0, 1)", "beta2": "[0, 1)",
            "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma"},
    state=("buf", "m", "v"),
    scalars=scalars,
    update="""
        buf = buf + one_minus_gamma * (g - buf)
        o = orth(g + gamma * (buf - g))
        m = m + one_minus_beta1 * (g - m)
        v = v + one_minus_beta2 * (g * g - v)
        adam = adam_lr_c1 * m / (sqrt(v) * inv_sq_c2 + eps)
        w = where(matrix > 0, w - lr * sqrt(max(1, cols / rows)) * o, w - adam)
    """,
    # pass 1 reads g, buf and writes the momentum step; Newton-Schulz reads
    # and writes it; pass 2 reads w, g, buf, m, v and it, writes w, buf, m, v
    bytes_per_param=64,
)
