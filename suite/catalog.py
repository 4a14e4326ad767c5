"""``optbench rules``: every registered rule, built-in and plug-in, with what
it takes; ``optbench rules NAME``: one rule in the lecture's symbols.

``python -m optbench.suite.catalog README.md`` rewrites the README's
generated parts (the rule table, each rule's peer) from the registry: after
a built-in rule is added or changed, that is the one step beyond its
module, its reference and its test row (tests/test_readme.py checks it)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from optbench.kernels import RULES, get_rule
from optbench.kernels.rules import BUILTIN, LECTURE, PLAIN, SOURCES


def origin(name: str) -> str:
    """Where a rule comes from: the lecture, built-in beyond it, or its plug-in source."""
    if name in LECTURE:
        return "the lecture's"
    if name in BUILTIN:
        return "built-in, beyond the lecture"
    return f"plug-in from {SOURCES[name]}"


def _hyper(rule) -> str:
    return ", ".join(f"{k}={v:g} {rule.interval(k)}" for k, v in rule.hyper.items())


def listing() -> str:
    """One block per rule: name, title, origin; hyper-parameters with defaults
    and ranges; state; bytes per parameter."""
    lines = []
    for name, rule in RULES.items():
        lines += [f"{name:<10} {rule.title} ({origin(name)})",
                  f"{'':<10} hyper: {_hyper(rule)}",
                  f"{'':<10} state: {', '.join(rule.state) or '-'};  bytes/param: {rule.bytes_per_param}"]
    lines.append(f"\n{len(RULES)} rules. `optbench rules NAME` shows one in the lecture's symbols.")
    return "\n".join(lines)


def describe(name: str) -> str:
    """One rule: its update in the lecture's symbols, the symbols' argument
    names, hyper-parameters, state, per-step scalars, the update text its
    kernels are generated from, and its PyTorch equivalent."""
    rule = get_rule(name)
    plain = PLAIN.get(name)
    formula = rule.formula
    lines = [f"{name}: {rule.title} ({origin(name)})", ""]
    if formula:
        lines += ["update (L' is the gradient):", *[f"    {part.strip()}" for part in formula.split(";")], ""]
    lines += ["with every rule: coupled L2  L' := L' + lambda w  (l2);  decoupled decay  w := w (1 - eta lambda)"
              "  (wd), before the update", ""]
    if rule.symbols:
        lines.append("symbols -> arguments: " + ", ".join(f"{s} -> {a}" for s, a in rule.symbols.items()))
    lines += [f"hyper-parameters: {_hyper(rule)}",
              f"state: {', '.join(rule.state) or '-'} (zero at the start);  bytes per parameter: "
              f"{rule.bytes_per_param}",
              f"per-step scalars (host, double): {', '.join(rule.scalar_names)}"]
    if rule.lookahead:
        lines.append(f"parameters hold a look-ahead point: w = params + {rule.lookahead}")
    lines += ["", "update as its kernels are generated from it:",
              *[f"    {st}" for st in rule.statements]]
    if rule.peer_note:
        lines += ["", f"Peer library: {rule.peer_note}"]
    if plain is not None:
        ref = ("its own float64 reference" if plain.reference is not None
               else "a float64 evaluation of its own text (checks the backends, not the maths)")
        lines += ["", f"optbench validate checks it against {ref}"]
    return "\n".join(lines)


def readme_table() -> str:
    """The README's rule table (built-in rules), from the registry."""
    rows = ["| rule | update (per element; L' is the gradient) | state | bytes/param |", "|---|---|---|---|"]
    for name in BUILTIN:
        rule = RULES[name]
        rows.append(f"| `{name}` | {rule.formula} | {', '.join(rule.state) or '-'} | {rule.bytes_per_param} |")
    return "\n".join(rows)


def readme_torch() -> str:
    """The README's list of each rule's equivalent in a peer library, from the registry."""
    return "\n".join(f"- `{name}`: {RULES[name].peer_note}." for name in BUILTIN)


def fill_readme(text: str) -> str:
    """``text`` (the README) with its generated rule table and torch list
    replaced by the registry's (what tests/test_readme.py compares)."""
    for marker, body in (("rule table", readme_table()), ("torch mappings", readme_torch())):
        text = re.sub(rf"(<!-- {marker}:[^>]*-->\n).*?(\n<!-- end {marker} -->)",
                      lambda m: m.group(1) + body + m.group(2), text, flags=re.S)
    return text


if __name__ == "__main__":
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    readme.write_text(fill_readme(readme.read_text()))
