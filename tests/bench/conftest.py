"""Sizes for the microbenchmarks: timed sizes only when pytest-benchmark times.

In the default test run (pyproject's addopts has ``--benchmark-disable``)
each benchmark runs its function once, untimed, at :data:`SMOKE_SIZE`
elements: a smoke test well under a second per case. When timing
(``--benchmark-enable``), the sizes are ``OPTBENCH_BENCH_SIZES`` (e.g.
``2^16,2^24``) or :data:`TIMED_SIZES`.
"""

import os

SMOKE_SIZE = 1 << 12
TIMED_SIZES = (1 << 16, 1 << 20, 1 << 24)


def _timing(config) -> bool:
    if config.getoption("benchmark_enable", False):
        return True
    return not config.getoption("benchmark_disable", True)


def _sizes(config):
    if not _timing(config):
        return [SMOKE_SIZE]
    text = os.environ.get("OPTBENCH_BENCH_SIZES")
    if not text:
        return list(TIMED_SIZES)
    from optbench.suite.cli import parse_sizes

    return parse_sizes(text)


def pytest_generate_tests(metafunc):
    if "size" in metafunc.fixturenames:
        sizes = _sizes(metafunc.config)
        metafunc.parametrize("size", sizes, ids=[f"n{n}" for n in sizes])
