"""What bench scripts share: writing their outputs (a table's rows as CSV, figures as JSON)."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def write_rows(out: Path, rows: list[dict]) -> None:
    """One CSV with a header from the first row's keys (the folder is made when missing)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def write_json(out: str | Path, blob: dict) -> None:
    """The figures as indented JSON (the folder is made when missing), and a line saying where."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(blob, indent=2))
    print(f"wrote {out}")
