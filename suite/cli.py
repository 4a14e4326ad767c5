"""The ``optbench`` command line.

    optbench validate [--backend auto|numpy|cupy]   every kernel vs the float64 reference
    optbench bench    [--backend ...] [--sizes ...]  update-rule bandwidth vs a copy
"""

from __future__ import annotations

import argparse
import sys

from kernels import BackendUnavailable, get_backend
from kernels.backend import BACKENDS


def _backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="array backend (auto: cupy if it can run, else numpy)")


def cmd_validate(args) -> int:
    from kernels.validate import SIZES, STEPS, validate

    backend = get_backend(args.backend)
    print(f"optbench validate: backend {backend.name} on {backend.device}; "
          f"{STEPS} steps per check, sizes {', '.join(map(str, SIZES))}")
    header = f"{'rule':<10} {'l2 form':<10} {'size':>8} {'steps':>5} {'max rel err':>12} {'tol':>9}  verdict"
    print(header)
    print("-" * len(header))
    failed = 0
    for c in validate(backend, steps=STEPS):
        failed += not c.ok
        print(f"{c.rule:<10} {c.l2_form:<10} {c.size:>8} {c.steps:>5} {c.max_rel_err:>12.2e} "
              f"{c.tolerance:>9.1e}  {'ok' if c.ok else 'FAIL'}", flush=True)
    print(f"{'all checks passed' if not failed else f'{failed} checks FAILED'} on {backend.name}")
    return 1 if failed else 0


def cmd_bench(args) -> int:
    from suite.bench import main as bench_main

    return bench_main(args)


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

    p = sub.add_parser("bench", help="update-rule bandwidth as a fraction of a copy's")
    _backend_arg(p)
    p.add_argument("--sizes", type=parse_sizes,
                   default=None, help="comma-separated parameter counts, e.g. 2**20,2**24")
    p.add_argument("--repeats", type=int, default=15, help="timed repeats per case (median)")
    p.add_argument("--naive", action="store_true",
                   help="also time the one-expression-per-line NumPy Adam")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BackendUnavailable as exc:
        print(f"optbench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("optbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
