"""``deep-narrow``: the vanishing-gradient setting (lecture section 8) --
digits through 5 hidden layers of 16 sigmoid units, Xavier init; at init
||dQ/dW1|| is ~0.004 of ||dQ/dW6||, so plain SGD and Momentum sit on the
chance plateau for ~50 epochs while per-parameter step sizes train at once.
Five layers, not eight: with eight even Adam needs over 150 epochs
(measured), too long for the protocol's budget."""

from .workload import Workload
from .reference import REFERENCE

WORKLOAD = Workload(
    name="deep-narrow",
    description="vanishing gradients: digits through 5 hidden layers of 16 sigmoid units, Xavier init "
                "(||dQ/dW1|| ~ 0.004 ||dQ/dW6|| at init); plain SGD sits on a plateau for ~50 epochs, "
                "per-parameter step sizes train at once",
    dataset="digits", hidden=(16,) * 5, activation="sigmoid", init="xavier", loss="cross_entropy",
    standardize=True, batch_size=32, epochs=120,
    metric="val_error",
    target=0.0875,
    target_note=f"1.05 x 0.0833, adam's mean final validation error at lr 0.03; {REFERENCE}",
    lr_scales={"sgd": 10.0, "momentum": 30.0, "nesterov": 30.0, "rmsprop": 30.0, "adadelta": 3.0, "adam": 3.0},
    budget_note="Depth measured (digits, 16 sigmoid units per layer, Xavier): 8 layers need > 150 epochs "
                "even with adam (0.78 val loss at 100), 6 leave sgd / momentum at chance (2.303) at every "
                "lr tried (0.003-10, 60-100 epochs), 4 let sgd (lr 1) reach adam's validation loss (~0.37) "
                "within 40 epochs. At 5, trained for 200 epochs (seeds 100-102, 5-epoch means of the "
                "validation error): adam 3e-2 0.096 at 40, 0.080 at 80, 0.074-0.079 from 100 on; "
                "rmsprop 3e-2 0.093 from 80; nesterov 3 on the chance plateau (0.90) until epoch 20, "
                "0.18 at 80, 0.09 from 120. 120 epochs let the adaptive methods level off and show how "
                "far the others get.",
)
