"""A benchmark's files: NAME.json (the report), NAME.md (the README's table, byte for
byte) and NAME.png (its plot, drawn by the benchmark) side by side in one folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save(out: Path, name: str, stored: dict[str, Any], table: list[str]) -> dict[str, str]:
    """Write `stored` as NAME.json and `table`'s lines as NAME.md in `out`; the three
    files' paths by what they hold (report, table, plot), for the summary."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": out / f"{name}.json",
        "table": out / f"{name}.md",
        "plot": out / f"{name}.png",
    }
    paths["report"].write_text(json.dumps(stored, indent=1, default=str))
    paths["table"].write_text("\n".join(table) + "\n")
    return {what: str(p) for what, p in paths.items()}
