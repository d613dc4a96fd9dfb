"""``python -m cnfkit.data {list,fetch,verify} [NAME ...]``: obtain and check datasets."""

from __future__ import annotations

import argparse
import sys

from .store import REGISTRY, DatasetError, data_root, dataset_dir, mirror_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnfkit.data", description=__doc__)
    parser.add_argument("command", choices=["list", "fetch", "verify"])
    parser.add_argument("names", nargs="*", help="datasets (default: all)")
    args = parser.parse_args(argv)
    names = args.names or sorted(REGISTRY)
    print(f"data root: {data_root()}   mirror: {mirror_root() or '(none)'}")
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        print(f"unknown dataset(s): {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        if args.command == "list":
            spec = REGISTRY[name]
            print(f"{name:20s} {len(spec.files):4d} files  {'download' if spec.urls else 'manual'}")
            continue
        try:
            path = dataset_dir(name, download=args.command == "fetch")
            print(f"{name:20s} OK  {path}")
        except DatasetError as exc:
            status = 1
            print(f"{name:20s} UNAVAILABLE\n{exc}\n", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
