"""The ``optbench`` command line.

    optbench run [STUDY] [--backend] [--out DIR] [--workers N | --scheduler ADDR | --gpus]
    optbench report [RESULTS_DIR]                   regenerate a report from stored results
    optbench convert RESULTS_DIR                    CSV cells (optbench before 0.2) to Parquet
    optbench validate [--backend auto|numpy|cupy|numba]   every kernel vs the float64 reference
    optbench bench [--backend ...] [--quick] [--out DIR]    rules, dropout, model-shaped updates
                                                      and training vs a copy and PyTorch
    optbench bench --sizes 2^20,2^24 | --models | --training [--batch-sizes ...]   one section
    optbench rules [NAME]                           every rule with its settings, or one in the lecture's symbols

run, validate, bench and rules take ``--rules FILE.py`` (repeatable): rules of
your own (a file defining RULE or RULES, see kernels/plugins.py).

Every failure ends with one line, ``optbench: <what went wrong>``, naming the
file, key or value, and a non-zero exit: 2 for bad input (a study, a value, a
path, a missing package or device), 1 when ``validate`` finds a kernel wrong
or something unexpected breaks. ``--debug`` (or ``OPTBENCH_DEBUG=1``) shows
the traceback instead, for a bug report.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from optbench.kernels import BackendUnavailable, get_backend
from optbench.kernels.backend import BACKENDS
from optbench.kernels.precision import STATE_PRECISIONS

#: Errors that mean the input was wrong (exit 2): bad values and files
#: (ValueError: StudyError, ResultsError, RuleError, ConfigError ...), paths
#: and disks (OSError), a missing package (ImportError) or device.
INPUT_ERRORS = (ValueError, OSError, ImportError, BackendUnavailable)
DEBUG_ENV = "OPTBENCH_DEBUG"


#: Where `optbench run` writes by default. Git ignores it: the reference runs
#: committed under results/<study>/ are never overwritten or resumed from by
#: accident, so a fresh clone's `optbench run` really trains.
LOCAL_RESULTS = Path("results") / "local"


def _backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="array backend (auto: cupy if it can run, else numba, else numpy)")


def _rules_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", action="append", default=[], metavar="FILE.py",
                   help="load rules of your own from a Python file defining RULE or RULES (repeatable)")


def _only_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--only", type=rule_names, default=None, metavar="NAME,...",
                   help=f"only these rules (comma-separated) in {what}")


def rule_names(text: str) -> tuple[str, ...]:
    """'adam,lion' -> ('adam', 'lion'); checked against the registry when the command runs."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("name at least one rule")
    return names


def _checked(names):
    """``names`` (or None), each a registered rule (else an UnknownRuleError listing them)."""
    from optbench.kernels import get_rule

    return None if names is None else tuple(get_rule(n).name for n in names)


def cmd_rules(args) -> int:
    from optbench.suite.catalog import describe, listing

    print(describe(args.name) if args.name else listing())
    return 0


def cmd_validate(args) -> int:
    from optbench.kernels.validate import (REFERENCES, SIZES, STATE_FLIP_EVERY, STATE_TOLERANCE, STEPS,
                                           reference_for, validate)

    backend = get_backend(args.backend)
    only = _checked(args.only)
    print(f"optbench validate: backend {backend.name} on {backend.device}; "
          f"{STEPS} steps per check, sizes {', '.join(map(str, SIZES))}"
          + (f"; state kept in {args.state}, checked step by step (state within "
             f"{STATE_TOLERANCE:.1e}, rounded as the reference rounds it but for at most one element in "
             f"{STATE_FLIP_EVERY})" if args.state != "fp32" else ""))
    from optbench.kernels import RULES

    for name in only or RULES:
        kind = reference_for(name)[0]
        if kind != "independent":
            print(f"{name}: checked against {REFERENCES[kind]}")
        rule = RULES[name]
        if rule.tolerance is not None:
            print(f"{name}: tolerance {rule.tolerance:.1e} per step, the rule's own: {rule.tolerance_note}")
    header = f"{'kernel':<17} {'variant':<10} {'size':>8} {'steps':>5} {'max rel err':>12} {'tol':>9}  verdict"
    print(header)
    print("-" * len(header))
    failed = 0
    for c in validate(backend, steps=STEPS, rules=only, state=args.state):
        failed += not c.ok
        verdict = "FAIL" if not c.ok else f"ok ({c.flips} rounding flip{'s' * (c.flips > 1)})" if c.flips else "ok"
        print(f"{c.rule:<17} {c.l2_form:<10} {c.size:>8} {c.steps:>5} {c.max_rel_err:>12.2e} "
              f"{c.tolerance:>9.1e}  {verdict}", flush=True)
    print(f"{'all checks passed' if not failed else f'{failed} checks FAILED'} on {backend.name}")
    return 1 if failed else 0


def cmd_run(args) -> int:
    import dataclasses

    from optbench.suite.studies import loader
    from optbench.suite.studies.runner import run_study
    from optbench.suite.studies.spec import expand

    backend = get_backend(args.backend)  # 'auto' is resolved and recorded as what runs
    if args.no_graph:  # in the environment, so local Dask workers inherit it
        from optbench.suite.training.epoch import NO_GRAPH

        os.environ[NO_GRAPH] = "1"
    if args.study == "lecture":  # every lecture study plus the custom experiments
        from optbench.suite.lecture.running import run_lecture

        out = Path(args.out) if args.out else LOCAL_RESULTS / "lecture"
        print(f"report: {run_lecture(out, backend=backend.name)}")
        return 0
    doc = loader.read(args.study, backend=backend.name)
    if args.rules:  # Dask workers load these too
        doc = dataclasses.replace(doc, rule_files=doc.rule_files + tuple(Path(r).resolve() for r in args.rules))
    if doc.is_protocol:  # tune, bracket, confirm (the default is one)
        return _run_protocol(args, doc)
    study = expand(doc)
    out = Path(args.out) if args.out else LOCAL_RESULTS / study.name
    summary = run_study(study, out, backend.name, workers=args.workers, scheduler=args.scheduler,
                        gpus=args.gpus, quiet=args.quiet, population=not args.no_population,
                        population_size=args.population_size)
    busy = f", {summary.busy} left to another run on this folder" if summary.busy else ""
    print(f"{summary.ran} cells run, {summary.skipped} skipped (already complete){busy}, "
          f"{summary.diverged} diverged; results in {out}")
    if not args.no_report:
        from optbench.suite.studies.report import write_report

        report = write_report(out)
        print(f"report: {report}")
    return 0


def _run_protocol(args, doc) -> int:
    from optbench.suite.protocol.report import write_protocol_report
    from optbench.suite.protocol.runner import run_protocol
    from optbench.suite.protocol.spec import expand

    protocol = expand(doc)
    out = Path(args.out) if args.out else LOCAL_RESULTS / protocol.name
    summary = run_protocol(protocol, out, workers=args.workers, scheduler=args.scheduler, gpus=args.gpus,
                           quiet=args.quiet, population=not args.no_population,
                           population_size=args.population_size)
    edges = f"; {len(summary.edges)} still on a grid edge (see the report)" if summary.edges else ""
    print(f"{summary.cells} cells ({summary.ran} run now), {summary.rounds} bracketing round(s){edges}; "
          f"results in {out}")
    if not args.no_report:
        print(f"report: {write_protocol_report(out)}")
    return 0


def cmd_report(args) -> int:
    from optbench.suite.reporting.kinds import read_kind

    results = Path(args.results)
    kind = read_kind(results)  # what the command that wrote the folder declared
    if kind == "throughput":  # optbench bench
        from optbench.suite.bench.report import write_throughput_report as write
    elif kind == "protocol":  # a protocol's results (the default)
        from optbench.suite.protocol.report import write_protocol_report as write
    elif kind == "lecture":  # optbench run lecture
        from optbench.suite.lecture.report import write_lecture_report as write
    else:
        from optbench.suite.studies.report import write_report as write
    print(f"report: {write(results)}")
    if kind in ("study", "protocol"):
        from optbench.suite.studies.store import damaged_cells

        for path, why in sorted(damaged_cells(results).items()):
            print(f"optbench: warning: {results / path} is damaged ({why}); left out of the report, "
                  "`optbench run` retrains it", file=sys.stderr)
    return 0


def cmd_convert(args) -> int:
    from optbench.suite.studies.convert import convert_tree

    root = Path(args.results)
    if not root.is_dir():
        raise FileNotFoundError(2, "no such results directory", str(root))
    done = convert_tree(root)
    if not done:
        print(f"{root}: nothing to convert (no results of optbench before 0.2 under it)")
    for folder, kind, n, damaged in done:
        print(f"{folder}: {kind}" + (f", {n} cells converted (CSV to Parquet, or re-keyed by phase)" if n else "")
              + (f", {len(damaged)} damaged (moved to damaged/; `optbench run` retrains them)" if damaged else ""))
        for path, why in damaged.items():
            print(f"optbench: warning: {path}: {why}", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from optbench.suite.bench.command import BenchOptions, main as bench_main

    if args.launches:
        from optbench.suite.bench.launches import BATCH_SIZES, HEADER, count, count_population

        print("launch budget, counted on the CuPy stand-in: one epoch of train_epoch and one evaluation,\n"
              "MLP 40-128-128-10 (ReLU, softmax cross-entropy), Adam, data of mnist1d's shape (3000 x 40)")
        print(HEADER)
        count(tuple(args.batch_sizes) if args.batch_sizes else BATCH_SIZES)
        print("\nthe same, trained as one population (batch 32):")
        for members in tuple(args.members or (1, 16, 108)):
            count_population(members)
        return 0
    return bench_main(BenchOptions(
        backend=args.backend, quick=args.quick, out=args.out,
        sizes=tuple(args.sizes) if args.sizes is not None else None, models=args.models,
        training=args.training, population=args.population,
        members=tuple(args.members) if args.members else None,
        batch_sizes=tuple(args.batch_sizes) if args.batch_sizes else None,
        repeats=args.repeats, torch=not args.no_torch, naive=args.naive, note=args.note,
        rules=_checked(args.only), states=args.state))


def parse_states(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated state precisions, fp32 first (the
    baseline every other one is compared with)."""
    states = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in states if s not in STATE_PRECISIONS]
    if not states or unknown:
        raise argparse.ArgumentTypeError(f"unknown state precision {', '.join(map(repr, unknown)) or repr(text)}; "
                                         f"allowed: {', '.join(STATE_PRECISIONS)}")
    return ("fp32",) + tuple(s for s in states if s != "fp32")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


#: The largest size a bench flag may ask for: 2^30 float32 elements are
#: 4 GiB a buffer, and a rule holds up to five (the card's memory, or this
#: machine's, before that); a population of more than 10,000 members of the
#: bench's MLP would take more than 20 GB.
MAX_SIZE = 2**30
MAX_MEMBERS = 10_000


def parse_sizes(text: str, limit: int = MAX_SIZE, what: str = "size") -> list[int]:
    """'1024,2^20,2**24' -> [1024, 1048576, 16777216]; every size in 1..limit
    (checked before a power is computed: 2^99999999 is refused, not computed)."""
    sizes = []
    for item in text.split(","):
        item = item.strip().replace("**", "^")
        try:
            base, _, exp = item.partition("^")
            base, exp = int(base), (int(exp) if exp else 1)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad {what} {item!r}: use integers or powers like 2^20, separated by commas"
            ) from None
        if base < 1 or exp < 0:
            raise argparse.ArgumentTypeError(f"{what} {item!r} must be at least 1")
        if base > 1 and exp * math.log2(base) > math.log2(limit):
            raise argparse.ArgumentTypeError(f"{what} {item!r} is over the limit of {limit:,}")
        sizes.append(base ** exp)
    return sizes


def parse_members(text: str) -> list[int]:
    return parse_sizes(text, MAX_MEMBERS, "member count")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other failure."""

    def error(self, message):
        self.exit(2, f"optbench: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="optbench", description=__doc__.split("\n\n")[0])
    debug_help = f"show the traceback of a failure (also {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    common = _Parser(add_help=False)  # --debug after the command too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", parents=[common], help="check every kernel against the float64 reference")
    _backend_arg(p)
    _rules_arg(p)
    _only_arg(p, "the check (dropout is then left out)")
    p.add_argument("--state", default="fp32", choices=STATE_PRECISIONS,
                   help="keep every rule's state at this precision, the reference's rounded alike "
                        "(default fp32; bf16: to nearest; bf16-sr: stochastic rounding)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("rules", parents=[common], help="every update rule (built-in and plug-in) with its "
                                                      "hyper-parameters, defaults, ranges, state and bytes per "
                                                      "parameter; or one rule in the lecture's symbols")
    p.add_argument("name", nargs="?", help="one rule to describe")
    _rules_arg(p)
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("run", parents=[common], help="run a study (default: the default study) and write its report")
    p.add_argument("study", nargs="?", default="default",
                   help="a built-in study's name (see suite/studies/builtin/), a path to a .toml file, "
                        "or 'lecture' (every lecture experiment and its report)")
    _backend_arg(p)
    p.add_argument("--out", help=f"results directory (default: {LOCAL_RESULTS}/<study>)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, help="run the cells on a local Dask cluster of N processes")
    where.add_argument("--scheduler", help="run the cells on an existing Dask cluster at ADDRESS")
    where.add_argument("--gpus", action="store_true",
                       help="one Dask worker per GPU (dask-cuda's LocalCUDACluster)")
    p.add_argument("--population-size", type=positive_int, default=None, metavar="N",
                   help="train at most N cells together as one population (default: as many as share a "
                        "shape and the memory budget allows)")
    p.add_argument("--no-population", action="store_true",
                   help="train cell by cell instead of in populations")
    p.add_argument("--no-graph", action="store_true",
                   help="on a GPU, launch every training step from Python instead of replaying each epoch as "
                        "one CUDA graph (the records are the same)")
    p.add_argument("--no-report", action="store_true", help="don't write the report afterwards")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _rules_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", parents=[common], help="regenerate a study's report from its stored results "
                                      "(or a throughput report from an optbench bench directory)")
    p.add_argument("results", nargs="?", default=str(LOCAL_RESULTS / "default"),
                   help="a results directory, e.g. results/default (the committed CPU reference run)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("convert", parents=[common],
                       help="convert results written by optbench before 0.2 (CSV cells) to Parquet, in place")
    p.add_argument("results", help="a results directory (every cells/ folder under it is converted)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "bench", parents=[common], help="update rules, dropout, model-shaped updates and training: "
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
    p.add_argument("--population", action="store_true",
                   help="only the population section: cost per member-step against the number of members P, "
                        "against a single run and JAX's vmap (where JAX is installed)")
    p.add_argument("--members", type=parse_members, default=None,
                   help="population sizes P for --population, e.g. 1,16,108")
    p.add_argument("--launches", action="store_true",
                   help="count device launches and host syncs per training step on the CuPy stand-in "
                        "(optbench.kernels.testing.cupy_standin; counted, not timed: needs no GPU)")
    p.add_argument("--batch-sizes", type=parse_sizes, default=None,
                   help="batch sizes for the training section, e.g. 16,64,256")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="timed samples per case (median; default: 15 CPU, 50 GPU; --quick 5, 20)")
    p.add_argument("--no-torch", action="store_true", help="don't time PyTorch even if it is installed")
    p.add_argument("--naive", action="store_true",
                   help="also time the one-expression-per-line NumPy Adam")
    p.add_argument("--note", default="", help="a remark about the machine, kept in meta.json and report.md")
    p.add_argument("--state", type=parse_states, default=("fp32",), metavar="PRECISIONS",
                   help="time each rule with its state kept at these precisions, side by side, e.g. "
                        f"fp32,bf16 (one of {', '.join(STATE_PRECISIONS)}; default fp32)")
    _rules_arg(p)
    _only_arg(p, "the rule and model-shaped sections")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        if getattr(args, "rules", None):
            from optbench.kernels.plugins import load_files

            load_files(args.rules)  # before anything looks a rule up
        return args.func(args)
    except KeyboardInterrupt:
        print("optbench: interrupted; finished cells are kept, run the same command again to go on",
              file=sys.stderr)
        return 130
    except INPUT_ERRORS as exc:
        if debug:
            raise
        print(f"optbench: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: still one line, and how to get the traceback
        if debug:
            raise
        print(f"optbench: unexpected {type(exc).__name__}: {_one_line(exc)} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """The error's message on one line (OSError: strerror and the path)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
