"""AdaDelta (Zeiler 2012), the lecture's formulas in Zeiler's order.

.. math::
    v := \\gamma v + (1-\\gamma) L' \\odot L' \\\\
    \\delta = L' \\odot (\\sqrt{\\Delta} + \\epsilon) / (\\sqrt{v} + \\epsilon) \\\\
    \\Delta := \\alpha \\Delta + (1-\\alpha)\\, \\delta \\odot \\delta \\\\
    w := w - \\eta\\, \\delta

Symbols -> arguments: eta -> ``lr`` (1 works, as the lecture says), gamma ->
``gamma`` (average of squared gradients), alpha -> ``alpha`` (average of
squared steps), epsilon -> ``eps``.

Conventions:

* Order: Zeiler updates v first and computes delta with the new v. The slide
  lists delta before the update of v (so delta would use the previous v); we
  follow Zeiler.
* eps outside the roots, as on the slide. Zeiler (and PyTorch) put it inside,
  sqrt(E + eps); our default eps = 1e-3 = sqrt(1e-6) makes the first steps
  match Zeiler's eps = 1e-6.
"""

from ..peer import Peer
from ..rule import Rule


RULE = Rule(
    name="adadelta",
    title="AdaDelta",
    formula="v := gamma v + (1 - gamma) L'^2;  delta = L' (sqrt(Delta) + eps) / (sqrt(v) + eps);  Delta := alpha Delta + (1 - alpha) delta^2;  w := w - eta delta",
    lecture=5,
    year=2012,
    lr_centre=1.0,
    peer=Peer("torch.optim", lambda hp: None if hp["wd"] else (
        "Adadelta", {"lr": hp["lr"], "rho": hp["gamma"], "eps": hp["eps"] ** 2, "weight_decay": hp["l2"]}),
        exact=False),  # the same memory traffic, for the bench; not the same rule
    peer_note='none exact: torch.optim.Adadelta puts eps inside both roots and uses one rho for both averages',
    hyper={"lr": 1.0, "gamma": 0.95, "alpha": 0.95, "eps": 1e-3},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps"},
    state=("v", "Delta"),
    scalars=lambda hp, t: {
        "lr": hp["lr"],
        "gamma": hp["gamma"],
        "one_minus_gamma": 1.0 - hp["gamma"],
        "alpha": hp["alpha"],
        "one_minus_alpha": 1.0 - hp["alpha"],
        "eps": hp["eps"],
    },
    update="""
        v = gamma * v + one_minus_gamma * (g * g)
        delta = g * (sqrt(Delta) + eps) / (sqrt(v) + eps)
        Delta = alpha * Delta + one_minus_alpha * (delta * delta)
        w = w - lr * delta
    """,
    bytes_per_param=28,  # read w, g, v, Delta; write w, v, Delta
)
