"""The house's rules that a grep can check (issue 11): the workspace is the only door to the database."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQL = re.compile(r"\.conn\b|\bexecute(many|script)?\(|\bsqlite3\b|\b(SELECT|INSERT|UPDATE|DELETE)\s+\S")


def test_no_sql_outside_the_workspace():
    offenders = []
    for part in ("kbh", "training", "annotator", "benchmarks", "docs"):
        for path in sorted((ROOT / part).rglob("*.py")):
            if path == ROOT / "kbh" / "workspace.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if SQL.search(line) and not line.lstrip().startswith("#"):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "SQL outside kbh/workspace.py:\n" + "\n".join(offenders)
