"""The README says what the code does: its generated parts match the registry."""

from pathlib import Path

from optbench.suite.catalog import fill_readme

README = Path(__file__).parents[1] / "README.md"


def test_the_rule_table_and_torch_mappings_match_the_rules():
    text = README.read_text()
    assert "<!-- rule table:" in text and "<!-- torch mappings:" in text
    assert fill_readme(text) == text, ("README's rule table or peer list is stale: "
                                   "rewrite them with `python -m optbench.suite.catalog README.md`")
