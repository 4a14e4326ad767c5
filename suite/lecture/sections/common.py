"""What a report section is: a :class:`Section` of :class:`Item` s."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..verdict import INFO


@dataclass
class Item:
    """One claim of the lecture and what our data say about it."""

    claim: str
    verdict: str                 # one line, with the measured number
    status: str = INFO           # AGREES, CONTRADICTS, MIXED, NOT_REPRODUCED or INFO
    figure: str | None = None    # a file name under figures/ (or a path relative to out)
    table: str | None = None     # Markdown
    note: str | None = None


@dataclass
class Section:
    number: int
    title: str
    lecture: str                 # what the lecture says, in a line or two
    items: list[Item] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def missing(what: str) -> Item:
    return Item(claim="(no data)", verdict=f"no results for {what}: run `run_lecture` first", status=INFO)
