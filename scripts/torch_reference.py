"""The reference point for the default protocol's mnist1d workload: the same
MLP (40-128-128-10 ReLU, He init, biases 0), split, standardisation, batch
size (32) and budget (40 epochs) trained in PyTorch, so an optimiser's place
in results/default can be told from a defect in ours.

    python scripts/torch_reference.py        # needs torch (the compare extra)

Prints the mean test accuracy over three seeds for Adam at the lrs around the
protocol's choice, with He and PyTorch's default init, and for SGD and
PyTorch's AdaDelta at the lrs the protocol chose for ours. The README's
"Reading the report" quotes its output.
"""

import numpy as np
import torch

from optbench.suite.data import datasets

SEEDS = (0, 1, 2)


def train(make_optimizer, seed: int, data, he_init: bool = True, epochs: int = 40, batch: int = 32) -> float:
    """Test accuracy after ``epochs`` of shuffled mini-batches."""
    X, y, X_test, y_test = data
    torch.manual_seed(seed)
    order = np.random.default_rng(seed)
    model = torch.nn.Sequential(torch.nn.Linear(40, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 10))
    if he_init:
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                torch.nn.init.zeros_(layer.bias)
    opt, loss = make_optimizer(model.parameters()), torch.nn.CrossEntropyLoss()
    for _ in range(epochs):
        perm = order.permutation(len(X))
        for i in range(0, len(X), batch):
            idx = torch.from_numpy(perm[i:i + batch])
            opt.zero_grad()
            loss(model(X[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return (model(X_test).argmax(1) == y_test).float().mean().item()


def main() -> None:
    torch.set_num_threads(1)
    ds = datasets.load("mnist1d", seed=0, standardize=True)
    data = (torch.from_numpy(ds.X_train).float(), torch.from_numpy(ds.y_train).long(),
            torch.from_numpy(ds.X_test).float(), torch.from_numpy(ds.y_test).long())
    cases = [(f"adam lr={lr:g} ({'He' if he else 'PyTorch default'} init)",
              lambda p, lr=lr: torch.optim.Adam(p, lr=lr), he)
             for he in (True, False) for lr in (1e-3, 3e-3, 1e-2)]
    cases += [("sgd lr=0.3", lambda p: torch.optim.SGD(p, lr=0.3), True),
              ("PyTorch's adadelta lr=3", lambda p: torch.optim.Adadelta(p, lr=3.0), True)]
    for name, make, he in cases:
        accs = [train(make, s, data, he) for s in SEEDS]
        print(f"{name:40s} test accuracy {np.mean(accs):.3f} (seeds {', '.join(f'{a:.3f}' for a in accs)})",
              flush=True)


if __name__ == "__main__":
    main()
