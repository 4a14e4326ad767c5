"""Assembling ``report.md``: the sections in the lecture's order, a header
saying how and on what the results were made, the claims our data
disagree with, and a summary table (``write_lecture_report``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..reporting.files import atomic_write_text
from ..reporting.markdown import fmt
from .sections import SECTIONS, Section
from .verdict import CONTRADICTS, MIXED, NOT_REPRODUCED
from .stored import DEFAULT_OUT, FIGURES, REPORT, STUDIES, TIMING, Stored


def _timing_lines(timing: dict | None) -> list[str]:
    if not timing:
        return ["- run time: not recorded (no timing.json)"]
    parts = timing.get("parts", {})
    studies = sum(v for k, v in parts.items() if k.startswith("study"))
    custom = sum(v for k, v in parts.items() if k.startswith("custom"))
    total = timing.get("total_seconds", timing.get("run_seconds"))
    cells = timing.get("cells", {})
    slowest = sorted(parts.items(), key=lambda kv: -kv[1])[:4]
    return [
        f"- run: {'QUICK (a smoke test: tiny studies, not evidence)' if timing.get('quick') else 'full'}, "
        f"backend {timing.get('backend', '?')}; {cells.get('ran', '?')} cells trained, "
        f"{cells.get('skipped', '?')} already complete and skipped",
        f"- wall time of that run: {fmt(total)} s in all = studies {fmt(studies)} s + custom experiments "
        f"{fmt(custom)} s + OBD {fmt(parts.get('obd', 0.0))} s + report {fmt(timing.get('report_seconds'))} s; "
        "slowest parts: " +
        ", ".join(f"{k} {v:.0f} s" for k, v in slowest),
    ]


def _device_line(st: Stored) -> str:
    from ..studies.store import read_metadata

    for name in STUDIES:
        meta = read_metadata(st.out / name)
        if meta:
            return (f"- device: {meta.get('device', '?')} ({meta.get('threads', '?')} CPU threads), "
                    f"numpy {meta.get('packages', {}).get('numpy', '?')}, git commit {str(meta.get('git_commit', '?'))[:10]}")
    return "- device: unknown (no study metadata)"


def render(sections: list[Section], st: Stored, timing: dict | None) -> str:
    lines = [
        "# The lecture, tested: training neural networks",
        "",
        "Each section below is one topic of the lecture (sections 1-12 of its digest), in "
        "its order: what the lecture says, then for each of its claims the figure or table that tests it and "
        "a one-line verdict with the measured number. Verdicts: **agrees**, **CONTRADICTS** (our data say "
        "otherwise), **mixed**, **not reproduced** (the effect did not show here), **no claim tested** "
        "(context or a measurement beyond the lecture).",
        "",
        f"- regenerated from the stored results in `{st.out}` by `suite.lecture.write_lecture_report` (no "
        "training); `suite.lecture.run_lecture` reruns what is missing",
        *_timing_lines(timing),
        _device_line(st),
        "",
    ]
    for sec in sections:
        lines += [f"## {sec.number}. {sec.title}", "", f"> **Lecture.** {sec.lecture}", "",
                  f"*Data:* {', '.join(sec.sources)}.", ""]
        for item in sec.items:
            lines += [f"**Claim.** {item.claim}", ""]
            if item.figure:
                link = item.figure if "/" in item.figure else f"{FIGURES}/{item.figure}"
                lines += [f"![{Path(item.figure).stem}]({link})", ""]
            if item.table:
                lines += [item.table, ""]
            lines += [f"**Verdict ({item.status}).** {item.verdict}", ""]
            if item.note:
                lines += [f"*Note:* {item.note}", ""]
    flagged = [(s.number, i) for s in sections for i in s.items if i.status in (CONTRADICTS, NOT_REPRODUCED, MIXED)]
    lines += ["## Where our data disagree with the lecture", ""]
    lines += [f"- §{n} ({i.status}) {i.claim} -- {i.verdict}" for n, i in flagged] or ["- nowhere: every tested claim agrees."]
    lines += ["", "## Summary", "", "| § | claim | verdict |", "|---|---|---|"]
    for s in sections:
        for i in s.items:
            lines.append(f"| {s.number} | {i.claim.replace('|', '/')} | {i.status} |")
    return "\n".join(lines) + "\n"


def write_lecture_report(out: Path = DEFAULT_OUT, timing: dict | None = None, start: float | None = None) -> Path:
    """Write ``out/report.md`` and ``out/figures/*.png`` from the stored results
    alone (no training); returns the report's path.

    timing / start: passed by run_lecture (the run's timings and its start on
    the perf_counter clock); they are stored in ``out/timing.json``, which a
    later call without them reads back.
    """
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"lecture results directory {out} does not exist (run run_lecture first)")
    st = Stored(out)
    for old in st.figures.glob("s[0-9][0-9]_*.png"):  # stale figures of an earlier report
        old.unlink()
    sections = [fn(st) for fn in SECTIONS]
    if timing is not None:
        if start is not None:
            timing["report_seconds"] = time.perf_counter() - start - timing.get("run_seconds", 0.0)
            timing["total_seconds"] = time.perf_counter() - start
        atomic_write_text(out / TIMING, json.dumps(timing, indent=2))
    elif (out / TIMING).is_file():
        timing = json.loads((out / TIMING).read_text())
    return atomic_write_text(out / REPORT, render(sections, st, timing))
