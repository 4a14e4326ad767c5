"""``digits-mlp``: scikit-learn's 8x8 digits through an MLP of 64-64 ReLU
units, He init, batches of 32, 45 epochs, scored on the validation error."""

from .workload import Workload
from .reference import REFERENCE

WORKLOAD = Workload(
    name="digits-mlp",
    description="digits (8x8 images, 10 classes), MLP 64-64 ReLU, He init",
    dataset="digits", hidden=(64, 64), activation="relu", init="he", loss="cross_entropy", standardize=True,
    batch_size=32, epochs=45,
    metric="val_error",
    target=0.0295,
    target_note=f"1.05 x 0.0281, rmsprop's mean final validation error at lr 3e-3; {REFERENCE}",
    lr_scales={"rmsprop": 3.0},
    budget_note="Validation error of the lrs tuned for 30 epochs, trained for 90 (seeds 100-102, "
                "5-epoch means): every optimiser within 0.002 of its 90-epoch value from epoch 30 "
                "(rmsprop 3e-3: 0.031 at 25, 0.029-0.030 from 30 on); 45 epochs.",
)
