"""The end of ``make test``: what was skipped and why, and how to enable it (from pytest's JUnit reports)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

HOW = {
    "not available": "point CNFKIT_DATA_MIRROR at the datasets or run `make data` (data/README.md)",
    "Chromium": "install Chromium (e.g. `apt-get install chromium`) for the book's browser test",
    "CUDA": "run `make gpu-check` on a GPU machine (the CPU dry run above covers the same code)",
    "results/smoke": "run `make smoke` first",
}


def main(paths: list[str]) -> int:
    reasons: Counter[str] = Counter()
    for path in map(Path, paths):
        if not path.exists():
            continue
        for case in ET.parse(path).getroot().iter("testcase"):
            skip = case.find("skipped")
            if skip is not None:
                reasons[(skip.get("message") or "no reason given").removeprefix("Skipped: ")] += 1
    if not reasons:
        print("make test: nothing was skipped.")
        return 0
    print(f"make test: {sum(reasons.values())} test(s) skipped:")
    for reason, n in reasons.most_common():
        how = next((h for key, h in HOW.items() if key in reason), "")
        print(f"  {n:4d} x {reason}" + (f"\n         to run them: {how}" if how else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
