"""Run a study's cells: in-process by default, or on a Dask cluster.

Cells are independent, so whoever runs them the rows are the same. The
driver (this process) is the only writer: each finished cell's rows go to
``results/<study>/cells/<key>.parquet`` atomically, so an interrupted sweep loses
at most the cells in flight and a rerun skips every completed cell.

Populations (the default): the pending cells that share a shape
(``optbench.suite.training.loop.population_key``) train together as one
batched model, in populations no larger than ``population_size`` and the
memory budget allow (:func:`plan_populations`). Each member's cell is
written when its population ends; an interrupted population is trained again
by the next run. ``population=False`` trains cell by cell.

Before the first cell trains, the whole study is checked against its data
(``check_study``) and the results folder is checked (``store.preflight``); a
damaged cell file is named and retrained; a cell another run on the same
folder has claimed is left to it (``store.Claims``).

* in-process (default): one cell after another, with a progress bar over
  cells and one over the epochs of the cell in flight;
* ``workers=N``: a local ``dask.distributed`` cluster of N single-threaded
  worker processes;
* ``scheduler=ADDRESS``: an existing Dask cluster (e.g. ``tcp://host:8786``);
* ``gpus=True``: dask-cuda's LocalCUDACluster, one worker per GPU.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from optbench.kernels import get_backend
from optbench.kernels.plugins import load_files

from ..nn.mlp import dense_parameters
from ..training.loop import activation_bytes, member_bytes, population_key, run, run_population
from ..reporting.kinds import write_kind
from . import store
from .spec import Cell, Study, check_study


@dataclass
class RunSummary:
    out: Path
    total: int
    skipped: int      # already complete before this run
    ran: int          # trained by this run
    diverged: int
    busy: int = 0     # claimed by another run on the same folder
    damaged: int = 0  # damaged files found, retrained


#: On the CPU a population is sized to the caches, not to memory: its
#: step's activations (activation_bytes x members) stay within this. Past
#: the caches every elementwise pass streams from memory and a population
#: is slower than its cells one by one. Measured on the 2-core EPYC, seconds
#: per member for 3 epochs of the default study's MLP, training alone: batch
#: 32, P = 1 / 8 / 108: 0.039 / 0.032 / 0.034 (one cell alone 0.051); batch
#: 256, P = 4 / 12 / 36: 0.016 / 0.015 / 0.015 (alone 0.017); full batch
#: (3000), P = 1 / 4 / 12: 0.012 / 0.017 / 0.017 (alone 0.012).
CPU_ACTIVATION_BUDGET = 4 << 20
#: The share of a GPU's free memory a population may take.
GPU_BUDGET_SHARE = 0.5


def cell_rows(study_name: str, cell: Cell, progress=None, rule_files=()) -> list[dict]:
    """Train one cell; its records as rows with every config field a column.
    rule_files: plug-in rules to load first (a Dask worker starts without them)."""
    load_files(rule_files)
    return _rows(study_name, cell, run(cell.config, progress=progress))


def population_rows(study_name: str, cells: list[Cell], progress=None,
                    rule_files=()) -> list[tuple[Cell, list[dict]]]:
    """Train ``cells`` (one population) together; each cell's rows."""
    load_files(rule_files)
    records = run_population([c.config for c in cells], progress=progress)
    return [(cell, _rows(study_name, cell, recs)) for cell, recs in zip(cells, records)]


def plan_populations(cells: list[Cell], shapes: dict, size: int | None = None,
                     budget: int | None = None) -> list[list[Cell]]:
    """The cells grouped into populations: cells that share a population key,
    in study order, at most ``size`` members each (None: no limit) and at most
    as many as the budget holds: ``budget`` bytes of device memory, or by
    default the GPU's free-memory share (member_bytes each), or on the CPU
    CPU_ACTIVATION_BUDGET of activations (activation_bytes each)."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(population_key(cell.config), []).append(cell)
    out = []
    for members in groups.values():
        c = members[0].config
        n_features, n_outputs, n_train = shapes[c.workload.dataset]
        n_params = dense_parameters([n_features, *c.workload.hidden, n_outputs])
        if budget is None and not get_backend(c.backend).is_gpu:
            cap = max(1, CPU_ACTIVATION_BUDGET // activation_bytes(c, n_features, n_outputs, n_train))
        else:
            cap = max(1, (budget if budget is not None else _gpu_budget(c.backend)) //
                      member_bytes(c, n_params, n_features, n_outputs, n_train))
        if size is not None:
            cap = min(cap, size)
        out += [members[i:i + cap] for i in range(0, len(members), cap)]
    return out


def _gpu_budget(backend: str) -> int:
    free, _ = get_backend(backend).xp.cuda.runtime.memGetInfo()
    return int(GPU_BUDGET_SHARE * free)


def _rows(study_name: str, cell: Cell, records: list[dict]) -> list[dict]:
    """A cell's records as rows with every config field a column."""
    config = cell.config
    columns = config.settings()
    columns["hidden"] = "-".join(str(h) for h in config.workload.hidden)
    columns["hyper"] = json.dumps(dict(columns["hyper"]), sort_keys=True)
    schedule = config.optimizer.schedule
    columns["schedule"] = None if schedule is None else schedule.label  # e.g. "warmup_cosine(warmup=100)"
    columns["decay"] = None if config.optimizer.decay == "all" else config.optimizer.decay
    columns["layer_norms"] = config.layer_norms or None
    if isinstance(config.dropout, tuple):
        columns["dropout"] = "-".join(str(p) for p in config.dropout)
    rows = []
    for rec in records:
        rec = dict(rec)
        columns["lr"] = rec.pop("lr_used")
        layers = sorted((k for k in rec if k.startswith("grad_norm_W")), key=lambda k: int(k[11:]))
        if layers:  # one list column, whatever the depth
            rec["layer_grad_norms"] = [rec.pop(k) for k in layers]
        rows.append({"study": study_name, "cell": cell.key, **dict(cell.tags), **columns, **rec})
    return rows


class _Sink:
    """Writes finished cells and keeps the tallies the summary reports."""

    def __init__(self, out: Path, bar, claims: store.Claims):
        self.out, self.bar, self.claims = out, bar, claims
        self.diverged = self.ran = self.busy = 0
        self.data_hashes: dict[str, str] = {}

    def take(self, cell: Cell) -> bool:
        """Claim ``cell`` for this run; False (and counted) when another run
        holds it or finished it meanwhile."""
        if not self.claims.claim(cell.key):
            self.busy += 1
            self.bar.update(1)
            return False
        if store.is_complete(self.out, cell.key):  # finished by another run since we looked
            self.claims.release(cell.key)
            self.busy += 1
            self.bar.update(1)
            return False
        return True

    def __call__(self, cell: Cell, rows: list[dict]) -> None:
        store.write_cell(self.out, cell.key, rows)
        self.claims.release(cell.key)
        self.ran += 1
        self.diverged += bool(rows[-1]["diverged"])
        self.data_hashes[f"{cell.config.workload.dataset} seed={cell.config.seed}"] = rows[-1]["data_hash"]
        self.bar.set_postfix_str(cell.label, refresh=False)
        self.bar.update(1)


def _in_process(study: Study, todo: list[Cell], sink: _Sink, plan: list[list[Cell]] | None) -> None:
    bar = sink.bar
    for pop in plan or []:
        members = [c for c in pop if sink.take(c)]
        if not members:
            continue
        bar.set_postfix_str(f"population of {len(members)}", refresh=False)
        with tqdm(total=members[0].config.workload.epochs, desc="  epochs", leave=False, unit="ep",
                  disable=bar.disable) as epochs:
            for cell, rows in population_rows(study.name, members, lambda epoch, records: epochs.update(1)):
                sink(cell, rows)
    for cell in todo if plan is None else []:
        if not sink.take(cell):
            continue
        bar.set_postfix_str(cell.label, refresh=False)
        with tqdm(total=cell.config.workload.epochs, desc="  epochs", leave=False, unit="ep",
                  disable=bar.disable) as epochs:
            def progress(epoch, record):
                epochs.update(1)
                epochs.set_postfix(val_loss=f"{record['val_loss']:.4g}", refresh=False)

            sink(cell, cell_rows(study.name, cell, progress))


def _client(workers: int | None, scheduler: str | None, gpus: bool):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("--workers/--scheduler/--gpus need Dask: pip install 'optbench[dask]'") from None
    if scheduler:
        return Client(scheduler), None
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ImportError("--gpus needs dask-cuda: pip install dask-cuda") from None
        cluster = LocalCUDACluster()
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    return Client(cluster), cluster


def _on_dask(study: Study, todo: list[Cell], sink: _Sink, client, plan: list[list[Cell]] | None) -> None:
    """Cells (or populations: then the unit of work) on the cluster; the
    results come back to this process, the only writer."""
    from dask.distributed import as_completed

    if plan is None:
        futures = {client.submit(cell_rows, study.name, cell, rule_files=study.rule_files, key=f"cell-{cell.key}",
                                 pure=False): cell
                   for cell in todo if sink.take(cell)}
    else:
        futures = {}
        for pop in plan:
            members = [c for c in pop if sink.take(c)]
            if members:
                futures[client.submit(population_rows, study.name, members, rule_files=study.rule_files,
                                      pure=False, key=f"population-{members[0].key}-{len(members)}")] = members
    try:
        for future in as_completed(futures):
            # A failure raises here; the cells finished before it are saved.
            result = future.result()
            for cell, rows in (result if plan is not None else [(futures[future], result)]):
                sink(cell, rows)
    finally:
        for f in futures:
            f.cancel()


def run_study(study: Study, out: Path, backend: str = "auto", workers: int | None = None,
              scheduler: str | None = None, gpus: bool = False, quiet: bool = False,
              population: bool = True, population_size: int | None = None, kind: str = "study") -> RunSummary:
    """Run every cell of ``study`` not yet in ``out``; returns what happened.
    ``kind``: what the folder holds ("protocol" where a protocol runs its rounds).

    Everything that can be checked is checked before the first cell trains:
    the backend, the workers, every cell against its data, the results folder.
    """
    out = Path(out)
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if population_size is not None and population_size < 1:
        raise ValueError(f"--population-size must be at least 1, got {population_size}")
    be = get_backend(backend)  # fails now, clearly, if the backend can't run
    shapes = check_study(study)
    store.refuse_legacy(out)
    store.preflight(out, len(study.cells))
    write_kind(out, kind)  # what `optbench report` writes for this folder
    keys = {c.key for c in study.cells}
    damaged = {path: why for path, why in store.damaged_cells(out).items() if Path(path).stem in keys}
    done = store.completed_cells(out)
    todo = [c for c in study.cells if c.key not in done]
    skipped = len(study.cells) - len(todo)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    for path, why in damaged.items():
        say(f"optbench run: retraining {out / path}: damaged ({why})")
    plan = plan_populations(todo, shapes, population_size) if population else None
    how = f" in {len(plan)} populations" if plan is not None and todo else ""
    say(f"optbench run: study {study.name!r}, {len(study.cells)} cells ({skipped} already complete, "
        f"skipped; {len(todo)} to run{how}) on {be.name} ({be.device}) -> {out}")
    with store.Claims(out) as claims, \
            tqdm(total=len(todo), desc=study.name, unit="cell", disable=quiet or not todo) as bar:
        sink = _Sink(out, bar, claims)
        try:
            if workers or scheduler or gpus:
                client, cluster = _client(workers, scheduler, gpus)
                try:
                    _on_dask(study, todo, sink, client, plan)
                finally:
                    client.close()
                    if cluster is not None:
                        cluster.close()
            else:
                _in_process(study, todo, sink, plan)
        except BaseException:
            # Ctrl-C or a failure: the metadata still describes what is on
            # disk, but an error writing it (a full disk) must not hide this one.
            try:
                _write_metadata(out, study, be, sink)
            except Exception:
                pass
            raise
        _write_metadata(out, study, be, sink)
    if sink.busy:
        say(f"optbench run: {sink.busy} cells were left to another run on {out}")
    return RunSummary(out, len(study.cells), skipped, sink.ran, sink.diverged, sink.busy, len(damaged))


def _write_metadata(out: Path, study: Study, be, sink: _Sink) -> None:
    old = store.read_metadata(out).get("data_hashes", {})
    store.write_metadata(out, store.run_metadata(study, be, {**old, **sink.data_hashes}))
