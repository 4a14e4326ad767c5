"""Run a study's cells: in-process by default, or on a Dask cluster.

Cells are independent, so whoever runs them the rows are the same. The
driver (this process) is the only writer: each finished cell's rows go to
``results/<study>/cells/<key>.csv`` atomically, so an interrupted sweep loses
at most the cells in flight and a rerun skips every completed cell.

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

from kernels import get_backend

from ..training.loop import run
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


def cell_rows(study_name: str, cell: Cell, progress=None) -> list[dict]:
    """Train one cell; its records as rows with every config field a column."""
    config = cell.config
    records = run(config, progress=progress)
    columns = config.as_dict()
    columns["hidden"] = "-".join(str(h) for h in config.hidden)
    columns["hyper"] = json.dumps(config.hyper, sort_keys=True)
    if isinstance(config.dropout, tuple):
        columns["dropout"] = "-".join(str(p) for p in config.dropout)
    rows = []
    for rec in records:
        rec = dict(rec)
        columns["lr"] = rec.pop("lr_used")
        rows.append({"study": study_name, "cell": cell.key, **columns, **rec})
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
        if cell.key in store.completed_cells(self.out):  # finished by another run since we looked
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
        self.data_hashes[f"{cell.config.dataset} seed={cell.config.seed}"] = rows[-1]["data_hash"]
        self.bar.set_postfix_str(cell.label, refresh=False)
        self.bar.update(1)


def _in_process(study: Study, todo: list[Cell], sink: _Sink) -> None:
    bar = sink.bar
    for cell in todo:
        if not sink.take(cell):
            continue
        bar.set_postfix_str(cell.label, refresh=False)
        with tqdm(total=cell.config.epochs, desc="  epochs", leave=False, unit="ep",
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


def _on_dask(study: Study, todo: list[Cell], sink: _Sink, client) -> None:
    from dask.distributed import as_completed

    futures = {client.submit(cell_rows, study.name, cell, key=f"cell-{cell.key}", pure=False): cell
               for cell in todo if sink.take(cell)}
    try:
        for future in as_completed(futures):
            # A failed cell raises here; the cells finished before it are saved.
            sink(futures[future], future.result())
    finally:
        for f in futures:
            f.cancel()


def run_study(study: Study, out: Path, backend: str = "auto", workers: int | None = None,
              scheduler: str | None = None, gpus: bool = False, quiet: bool = False) -> RunSummary:
    """Run every cell of ``study`` not yet in ``out``; returns what happened.

    Everything that can be checked is checked before the first cell trains:
    the backend, the workers, every cell against its data, the results folder.
    """
    out = Path(out)
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    be = get_backend(backend)  # fails now, clearly, if the backend can't run
    check_study(study)
    store.preflight(out, len(study.cells))
    keys = {c.key for c in study.cells}
    damaged = {path: why for path, why in store.damaged_cells(out).items() if Path(path).stem in keys}
    done = store.completed_cells(out)
    todo = [c for c in study.cells if c.key not in done]
    skipped = len(study.cells) - len(todo)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    for path, why in damaged.items():
        say(f"optbench run: retraining {out / path}: damaged ({why})")
    say(f"optbench run: study {study.name!r}, {len(study.cells)} cells ({skipped} already complete, "
        f"skipped; {len(todo)} to run) on {be.name} ({be.device}) -> {out}")
    with store.Claims(out) as claims, \
            tqdm(total=len(todo), desc=study.name, unit="cell", disable=quiet or not todo) as bar:
        sink = _Sink(out, bar, claims)
        try:
            if workers or scheduler or gpus:
                client, cluster = _client(workers, scheduler, gpus)
                try:
                    _on_dask(study, todo, sink, client)
                finally:
                    client.close()
                    if cluster is not None:
                        cluster.close()
            else:
                _in_process(study, todo, sink)
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
