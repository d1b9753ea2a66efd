"""What the simulated-table generators (make_*_table.py) share: writing a table's rows as CSV."""

from __future__ import annotations

import csv
from pathlib import Path


def write_rows(out: Path, rows: list[dict]) -> None:
    """One CSV with a header from the first row's keys (the folder is made when missing)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
