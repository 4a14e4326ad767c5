"""The ``optbench`` command line.

    optbench run [STUDY] [--backend] [--out DIR] [--workers N | --scheduler ADDR | --gpus]
    optbench report [RESULTS_DIR]                   regenerate a report from stored results
    optbench validate [--backend auto|numpy|cupy|numba]   every kernel vs the float64 reference
    optbench bench [--backend ...] [--quick] [--out DIR]    rules, dropout, model-shaped updates
                                                      and training vs a copy and PyTorch
    optbench bench --sizes 2^20,2^24 | --models | --training [--batch-sizes ...]   one section
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kernels import BackendUnavailable, get_backend
from kernels.backend import BACKENDS
from suite.studies.spec import StudyError
from suite.studies.store import ResultsError


#: Where `optbench run` writes by default. Git ignores it: the reference runs
#: committed under results/<study>/ are never overwritten or resumed from by
#: accident, so a fresh clone's `optbench run` really trains.
LOCAL_RESULTS = Path("results") / "local"


def _backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="array backend (auto: cupy if it can run, else numpy)")


def cmd_validate(args) -> int:
    from kernels.validate import SIZES, STEPS, validate

    backend = get_backend(args.backend)
    print(f"optbench validate: backend {backend.name} on {backend.device}; "
          f"{STEPS} steps per check, sizes {', '.join(map(str, SIZES))}")
    header = f"{'kernel':<17} {'variant':<10} {'size':>8} {'steps':>5} {'max rel err':>12} {'tol':>9}  verdict"
    print(header)
    print("-" * len(header))
    failed = 0
    for c in validate(backend, steps=STEPS):
        failed += not c.ok
        print(f"{c.rule:<17} {c.l2_form:<10} {c.size:>8} {c.steps:>5} {c.max_rel_err:>12.2e} "
              f"{c.tolerance:>9.1e}  {'ok' if c.ok else 'FAIL'}", flush=True)
    print(f"{'all checks passed' if not failed else f'{failed} checks FAILED'} on {backend.name}")
    return 1 if failed else 0


def cmd_run(args) -> int:
    from suite.studies.runner import run_study
    from suite.studies.spec import load_study

    backend = get_backend(args.backend)  # 'auto' is resolved and recorded as what runs
    if args.study == "lecture":  # every lecture study plus the custom experiments
        from suite.lecture.running import run_lecture

        out = Path(args.out) if args.out else LOCAL_RESULTS / "lecture"
        print(f"report: {run_lecture(out, backend=backend.name)}")
        return 0
    study = load_study(args.study, backend=backend.name)
    out = Path(args.out) if args.out else LOCAL_RESULTS / study.name
    summary = run_study(study, out, backend.name, workers=args.workers,
                        scheduler=args.scheduler, gpus=args.gpus, quiet=args.quiet)
    print(f"{summary.ran} cells run, {summary.skipped} skipped (already complete), "
          f"{summary.diverged} diverged; results in {out}")
    if not args.no_report:
        from suite.studies.report import write_report

        report = write_report(out)
        print(f"report: {report}")
    return 0


def cmd_report(args) -> int:
    from suite.bench.report import write_throughput_report
    from suite.bench.scoring import CSV_NAME

    results = Path(args.results)
    if (results / CSV_NAME).is_file():  # a throughput directory (optbench bench)
        print(f"report: {write_throughput_report(results)}")
        return 0
    from suite.lecture.report import write_lecture_report
    from suite.lecture.stored import TIMING

    if (results / TIMING).is_file():  # a lecture directory (optbench run lecture)
        print(f"report: {write_lecture_report(results)}")
        return 0
    from suite.studies.report import write_report

    print(f"report: {write_report(results)}")
    return 0


def cmd_bench(args) -> int:
    from suite.bench.command import BenchOptions, main as bench_main

    return bench_main(BenchOptions(
        backend=args.backend, quick=args.quick, out=args.out,
        sizes=tuple(args.sizes) if args.sizes is not None else None, models=args.models,
        training=args.training, batch_sizes=tuple(args.batch_sizes) if args.batch_sizes else None,
        repeats=args.repeats, torch=not args.no_torch, naive=args.naive, note=args.note))


def parse_sizes(text: str) -> list[int]:
    """'1024,2^20,2**24' -> [1024, 1048576, 16777216]."""
    sizes = []
    for item in text.split(","):
        item = item.strip().replace("**", "^")
        try:
            base, _, exp = item.partition("^")
            sizes.append(int(base) ** int(exp) if exp else int(base))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad size {item!r}: use integers or powers like 2^20, separated by commas"
            ) from None
        if sizes[-1] < 0:
            raise argparse.ArgumentTypeError(f"size {item!r} is negative")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optbench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check every kernel against the float64 reference")
    _backend_arg(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a study (default: the default study) and write its report")
    p.add_argument("study", nargs="?", default="default",
                   help="a built-in study's name (see suite/studies/builtin/), a path to a .toml file, "
                        "or 'lecture' (every lecture experiment and its report)")
    _backend_arg(p)
    p.add_argument("--out", help=f"results directory (default: {LOCAL_RESULTS}/<study>)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="run the cells on a local Dask cluster of N processes")
    where.add_argument("--scheduler", help="run the cells on an existing Dask cluster at ADDRESS")
    where.add_argument("--gpus", action="store_true",
                       help="one Dask worker per GPU (dask-cuda's LocalCUDACluster)")
    p.add_argument("--no-report", action="store_true", help="don't write the report afterwards")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="regenerate a study's report from its stored results "
                                      "(or a throughput report from an optbench bench directory)")
    p.add_argument("results", nargs="?", default=str(LOCAL_RESULTS / "default"),
                   help="a results directory, e.g. results/default (the committed CPU reference run)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "bench", help="update rules, dropout, model-shaped updates and training: "
                      "bandwidth vs a copy and vs PyTorch; writes results/throughput/<device>")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="our kernels: auto (cupy if it can run, else numpy and numba if installed), "
                        "numpy, numba (numba and numpy side by side) or cupy")
    p.add_argument("--quick", action="store_true",
                   help="fewer sizes, repeats and batch sizes (under 3 minutes on a 2-core CPU)")
    p.add_argument("--out", help="directory for throughput.csv, meta.json, report.md and figures "
                                 "(default: results/throughput/<device> for a full run; "
                                 "a quick or partial run is only kept with --out)")
    p.add_argument("--sizes", type=parse_sizes, default=None,
                   help="only the per-size rule/dropout section, at these parameter counts, e.g. 2^20,2^24")
    p.add_argument("--models", action="store_true",
                   help="only the model-shaped section (MLP parameter tensors)")
    p.add_argument("--training", action="store_true",
                   help="only training throughput (examples/s against batch size, and PyTorch's)")
    p.add_argument("--batch-sizes", type=parse_sizes, default=None,
                   help="batch sizes for the training section, e.g. 16,64,256")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed samples per case (median; default: 15 CPU, 50 GPU; --quick 5, 20)")
    p.add_argument("--no-torch", action="store_true", help="don't time PyTorch even if it is installed")
    p.add_argument("--naive", action="store_true",
                   help="also time the one-expression-per-line NumPy Adam")
    p.add_argument("--note", default="", help="a remark about the machine, kept in meta.json and report.md")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (BackendUnavailable, StudyError, ResultsError) as exc:
        print(f"optbench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("optbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
