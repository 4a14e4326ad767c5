"""LAMB written as a plug-in: a per-tensor reduction in the rule language.

    m := gamma m + (1 - gamma) L';  v := alpha v + (1 - alpha) L'^2;  r = m / (sqrt(v) + eps)
    w := w - eta / (1 - gamma^t) * min(||w||, 10) / (||r|| + eps) * r      (norms per tensor)

``norm(w)`` and ``norm(r)`` reduce over the view each element belongs to
(a weight matrix, a bias): every element of a tensor reads its tensor's
norms. optbench compiles the text into two passes over the elements with
the norms between them, on every backend and for every member of a
population at once. The built-in ``lamb`` is the same rule; this file shows
how a user writes one (and validates it: the reference below takes the
views as its sixth argument).

    optbench validate --rules suite/studies/examples/lamb_plugin.py --only lamb_plugin
"""

import numpy as np

from optbench.kernels import Rule


def reference(w, g, state, hp, t, views):
    """The float64 oracle, tensor by tensor (``views.views``: name, offset, shape)."""
    m = hp["gamma"] * state["m"] + (1.0 - hp["gamma"]) * g
    v = hp["alpha"] * state["v"] + (1.0 - hp["alpha"]) * g * g
    r = m / (np.sqrt(v) + hp["eps"])
    out = w.copy()
    for view in views.views:
        part = slice(view.offset, view.offset + view.size)
        wn, rn = min(np.linalg.norm(w[part]), 10.0), np.linalg.norm(r[part])
        trust = wn / (rn + hp["eps"]) if wn > 0 and rn > 0 else 1.0
        out[part] = w[part] - hp["lr"] / (1.0 - hp["gamma"] ** t) * trust * r[part]
    return out, {"m": m, "v": v}


RULE = Rule(
    name="lamb_plugin", title="LAMB (plug-in)",
    hyper={"lr": 1e-3, "gamma": 0.9, "alpha": 0.999, "eps": 1e-6},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps"},
    formula="w := w - eta / (1 - gamma^t) min(||w||, 10) / (||r|| + eps) r, r = m / (sqrt(v) + eps)",
    state=("m", "v"), bytes_per_param=76, reference=reference,
    scalars=lambda hp, t: {"gamma": hp["gamma"], "one_minus_gamma": 1.0 - hp["gamma"], "alpha": hp["alpha"],
                           "one_minus_alpha": 1.0 - hp["alpha"], "lr_c1": hp["lr"] / (1.0 - hp["gamma"] ** t),
                           "eps": hp["eps"]},
    update="""
        m = gamma * m + one_minus_gamma * g
        v = alpha * v + one_minus_alpha * (g * g)
        r = m / (sqrt(v) + eps)
        wn = min(norm(w), 10)
        rn = norm(r)
        trust = where(wn > 0, where(rn > 0, wn / (rn + eps), 1), 1)
        w = w - lr_c1 * trust * r
    """,
)
