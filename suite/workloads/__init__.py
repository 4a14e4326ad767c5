"""Workloads: the problems runs train on, one module each (as AlgoPerf's).

:class:`~.workload.Workload` owns a data set, a model factory, a loss, a
budget, a metric and a target. The named ones, in a fixed order (the names
are stable; each module says how its budget and target were measured):

| workload | data | model | batch | epochs | steps | metric |
|---|---|---|---|---|---|---|
| ``mnist1d-mlp`` | mnist1d | 128-128 ReLU, He | 32 | 40 | 3760 | val_error |
| ``digits-mlp`` | digits | 64-64 ReLU, He | 32 | 45 | 1530 | val_error |
| ``deep-narrow`` | digits | 5 x 16 sigmoid, Xavier | 32 | 120 | 4080 | val_error |
| ``noisy-quadratic`` | quadratic (raw) | linear | 128 | 150 | 3600 | val_loss |
| ``regression-mlp`` | regression | 64-64 tanh, Xavier | 32 | 300 | 5700 | val_loss |

A new workload is a module here defining ``WORKLOAD`` and one line in
:data:`_MODULES`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from . import deep_narrow, digits_mlp, mnist1d_mlp, noisy_quadratic, regression_mlp
from .reference import REFERENCE
from .workload import METRICS, TARGET_FACTOR, TARGET_RULE, Workload

_MODULES = (mnist1d_mlp, digits_mlp, deep_narrow, noisy_quadratic, regression_mlp)
WORKLOADS: Mapping[str, Workload] = MappingProxyType({m.WORKLOAD.name: m.WORKLOAD for m in _MODULES})

__all__ = ["METRICS", "REFERENCE", "TARGET_FACTOR", "TARGET_RULE", "WORKLOADS", "Workload", "get_workload"]


def get_workload(name: str) -> Workload:
    """The workload called ``name``; ValueError listing the names if none is."""
    try:
        return WORKLOADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown workload {name!r}; allowed: {', '.join(WORKLOADS)}") from None
