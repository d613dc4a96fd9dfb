"""``make verify [PROFILE=quick] [ONLY=02]``: did my rerun reproduce the committed results?

Reruns the profile (or the notebooks ``--only`` names) into a scratch folder (``build/verify/<profile>/``; the
committed ``results/<profile>/`` is never written), then compares every number of every results JSON with the
committed one and each claim's verdict.  Each number is

* **identical** (bit for bit, as on the machine that made it, same thread count),
* **within noise**: ``|rerun - committed| <= band``, or
* **outside** its band.

The band of a number is ``2 * sqrt(2 / n) * std`` when the JSON carries its spread over ``n`` seeds (a sibling
``<name>_std`` with ``n`` = the number of seeds), ``2 * sqrt(2) * se`` for a standard error (``<name>_se``): the
difference of two independent runs within two of its standard deviations.  A number without a spread gets the stated
default, ``DEFAULT_RELATIVE_BAND`` of its size (plus ``ABSOLUTE_FLOOR``).  Wall times, peak memory, provenance,
configuration and the papers' quoted numbers are not compared.  The exit status is 1 when a headline number
(``HEADLINES``: what the papers' tables and the claims read) is outside its band or a claim's verdict differs, 2 when
the comparison is refused (a missing folder, another profile or configuration digest), else 0.  A JSON report goes
beside the rerun (``verify_report.json``).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .claims import evaluate_claims

ROOT = Path(__file__).resolve().parents[2]
RESULT_FILES = ("theory", "mnist", "binary_dequantization", "drive", "super_resolution")
# What the papers' tables and the claims read: a difference beyond noise here fails the verification.
HEADLINES: dict[str, tuple[str, ...]] = {
    "theory": ("/rotating/*/test_nll", "/gmm/*/posterior_mmd", "/gmm/*/accuracy", "/gmm/*/mode_mass_error"),
    "mnist": ("/datasets/*/accuracy_forward_pass", "/datasets/*/accuracy_cnf_bayes"),
    "binary_dequantization": ("/images/*/test_bpd",),
    "drive": ("/summary/*/bpd", "/summary/*/f_score", "/summary/*/pr_distance_to_human/*"),
    "super_resolution": ("/table1/*/*", "/table2/*/*/psnr", "/table2/*/*/ssim", "/table2/*/*/bpd"),
}
# Not results: where and how fast it ran, what it was configured with, and the papers' own numbers.
IGNORED = (
    "/provenance/*",
    "/config/*",
    "/paper/*",
    "*time_s*",
    "*wall*",
    "*peak_rss*",
    "*_std",
    "*_se",
    # per-item values (one number per test image or crop): the inputs of the claims' paired bootstraps, whose
    # verdicts are compared; one item moves far more than the mean over items, so they are not compared one by one
    "*_per_image/*",
    "/table1_per_item/*",
)
# A number without a spread of its own: 1% of its size.  Where the committed results carry seed spreads, a headline
# number's 2-sigma band is several percent (README, "Did I get your numbers?"), so this default is the stricter one.
DEFAULT_RELATIVE_BAND = 0.01
ABSOLUTE_FLOOR = 1e-9


class VerifyError(RuntimeError):
    """The comparison is refused: a folder is missing, or the results are of another profile or configuration."""


@dataclass(frozen=True)
class Number:
    file: str
    path: str
    committed: Any
    rerun: Any
    band: float | None  # None: not a number (compared for equality)
    band_source: str
    headline: bool

    @property
    def status(self) -> str:
        if self.rerun is None:
            return "missing"
        if self.committed == self.rerun or (_is_nan(self.committed) and _is_nan(self.rerun)):
            return "identical"
        if self.band is not None and abs(self.rerun - self.committed) <= self.band:
            return "within noise"
        return "outside"


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    """``{"/a/b/0": leaf}`` for every leaf of a JSON document."""
    if isinstance(doc, dict):
        return {k: v for key, val in doc.items() for k, v in flatten(val, f"{prefix}/{key}").items()}
    if isinstance(doc, list):
        return {k: v for i, val in enumerate(doc) for k, v in flatten(val, f"{prefix}/{i}").items()}
    return {prefix: doc}


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def band(path: str, value: float, flat: dict[str, Any], seeds: int) -> tuple[float, str]:
    """The noise band of the number at ``path`` and where it comes from (module docstring)."""
    std: Any = flat.get(path + "_std")
    se: Any = flat.get(path + "_se")
    if _is_number(se) and float(se) > 0:
        return 2 * math.sqrt(2) * float(se) + ABSOLUTE_FLOOR, "standard error"
    if _is_number(std) and float(std) > 0 and seeds > 1:
        return 2 * math.sqrt(2 / seeds) * float(std) + ABSOLUTE_FLOOR, f"seed std over {seeds} seeds"
    return DEFAULT_RELATIVE_BAND * abs(value) + ABSOLUTE_FLOOR, "default (1%)"


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VerifyError(f"{path} is not readable JSON ({exc}); rerun or restore it") from exc


def check_comparable(name: str, committed: dict[str, Any], rerun: dict[str, Any], profile: str) -> None:
    """Refuse results of another profile or configuration digest, saying which and why."""
    a, b = committed.get("provenance", {}), rerun.get("provenance", {})
    for side, prov in (("committed", a), ("rerun", b)):
        if prov.get("profile") != profile:
            raise VerifyError(
                f"{name}.json ({side}) is of profile {prov.get('profile')!r}, not {profile!r}: results of different "
                "profiles have different sizes and are never compared"
            )
    if a.get("config_digest") != b.get("config_digest"):
        raise VerifyError(
            f"{name}.json: the committed results were made with configuration {a.get('config_digest')!r}, the rerun "
            f"with {b.get('config_digest')!r}: the {profile} profile changed since they were committed, so they are "
            "not comparable (regenerate the committed results first)"
        )


def compare_file(name: str, committed: dict[str, Any], rerun: dict[str, Any]) -> list[Number]:
    ca, cb = flatten(committed), flatten(rerun)
    seeds = len(committed.get("provenance", {}).get("seeds", [0]))
    out = []
    for path, value in ca.items():
        if _matches(path, IGNORED):
            continue
        other = cb.get(path)
        width: float | None = None
        source = "compared for equality"
        if _is_number(value):
            width, source = band(path, float(value), ca, seeds)
            if not _is_number(other):
                width, source = None, "not a number in the rerun"
        out.append(Number(name, path, value, other, width, source, _matches(path, HEADLINES.get(name, ()))))
    return out


def compare_claims(committed: dict[str, Any], merged: dict[str, Any]) -> list[dict[str, Any]]:
    """Each claim's verdict on the committed results and on the rerun's (the same claims code on both).

    A claim the committed results cannot decide (``holds`` None: they predate what its test reads, e.g. per-image
    values) is ``new`` in the rerun, not a changed verdict; one that the committed results decide and the rerun
    does not is a difference."""
    before = {r["id"]: r for r in evaluate_claims(committed)}
    after = {r["id"]: r for r in evaluate_claims(merged)}
    rows = [{"id": k, "committed": before[k]["holds"], "rerun": after[k]["holds"]} for k in before]
    return [r | {"same": r["committed"] in (None, r["rerun"]), "new": r["committed"] is None} for r in rows]


def compare(committed_dir: Path, rerun_dir: Path, profile: str, only: list[str] | None = None) -> dict[str, Any]:
    """Compare every results JSON present in ``rerun_dir`` (all of ``RESULT_FILES`` when ``only`` is None)."""
    if not committed_dir.is_dir() or not any(committed_dir.glob("*.json")):
        raise VerifyError(
            f"no committed results in {committed_dir}: verify compares a rerun with results/<profile>/ as committed "
            "(a fresh clone has results/quick/; for other profiles run `make reproduce PROFILE=...` first)"
        )
    committed, merged, numbers, compared = {}, {}, [], []
    for name in RESULT_FILES:
        c, r = _load(committed_dir, name), _load(rerun_dir, name)
        if c is not None:
            committed[name] = merged[name] = c
        if r is None:
            if only is None and c is not None:
                raise VerifyError(f"the rerun wrote no {name}.json into {rerun_dir}: it did not finish")
            continue
        if c is None:
            raise VerifyError(f"{committed_dir} has no {name}.json to compare the rerun's with")
        check_comparable(name, c, r, profile)
        merged[name] = r
        numbers += compare_file(name, c, r)
        compared.append(name)
    if not compared:
        raise VerifyError(f"no results JSON in {rerun_dir} to compare: run the rerun first (without --compare-only)")
    claims = compare_claims(committed, merged)
    failed = [n for n in numbers if n.headline and n.status in ("outside", "missing")]
    return {
        "profile": profile,
        "committed": str(committed_dir),
        "rerun": str(rerun_dir),
        "files": compared,
        "numbers": [n.__dict__ | {"status": n.status} for n in numbers],
        "claims": claims,
        "failed_numbers": [f"{n.file}.json:{n.path}" for n in failed],
        "failed_claims": [c["id"] for c in claims if not c["same"]],
        "passed": not failed and all(c["same"] for c in claims),
    }


def table(report: dict[str, Any]) -> str:
    """The short table ``make verify`` prints."""
    statuses = ("identical", "within noise", "outside", "missing")
    lines = ["| results | numbers | " + " | ".join(statuses) + " | headline outside |", "|---" * 7 + "|"]
    for name in report["files"]:
        rows = [n for n in report["numbers"] if n["file"] == name]
        counts = [sum(n["status"] == s for n in rows) for s in statuses]
        bad = sum(n["headline"] and n["status"] in ("outside", "missing") for n in rows)
        lines.append(f"| {name}.json | {len(rows)} | " + " | ".join(map(str, counts)) + f" | {bad} |")
    for n in report["numbers"]:
        if n["headline"] and n["status"] in ("outside", "missing"):
            lines.append(
                f"\nOUTSIDE NOISE: {n['file']}.json:{n['path']}: committed {n['committed']!r}, rerun {n['rerun']!r}"
                + (f" (band +-{n['band']:.3g}, {n['band_source']})" if n["band"] is not None else "")
            )
    for c in report["claims"]:
        if c.get("new") and c["rerun"] is not None:
            lines.append(f"\nnew claim verdict: {c['id']}: holds={c['rerun']} (the committed results cannot decide it)")
        if not c["same"]:
            lines.append(
                f"\nCLAIM VERDICT DIFFERS: {c['id']}: committed holds={c['committed']}, rerun holds={c['rerun']}"
            )
    headline = [n for n in report["numbers"] if n["headline"]]
    lines.append(
        f"\n{len(headline)} headline numbers ({sum(n['status'] == 'identical' for n in headline)} identical), "
        f"{len(report['claims'])} claim verdicts ({sum(c['same'] for c in report['claims'])} the same): "
        + ("REPRODUCED" if report["passed"] else "NOT REPRODUCED")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnfkit.repro.verify", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="quick")
    p.add_argument("--only", nargs="*", default=None, help="rerun only these notebooks (name or number prefixes)")
    p.add_argument("--committed", default=None, help="the results to compare with (default: results/<profile>/)")
    p.add_argument("--scratch", default=None, help="where the rerun writes (default: build/verify/<profile>/)")
    p.add_argument("--device", default="cpu", help="where the rerun trains (the committed quick results: cpu)")
    p.add_argument("--compare-only", action="store_true", help="compare what the scratch folder holds; no rerun")
    a = p.parse_args(argv)
    from .profiles import ProfileError, resolve_profile

    try:
        profile = resolve_profile(a.profile)
    except ProfileError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    committed = (Path(a.committed) if a.committed else ROOT / "results" / profile).resolve()
    scratch = (Path(a.scratch) if a.scratch else ROOT / "build" / "verify" / profile).resolve()
    if scratch.resolve() == committed.resolve():
        print("verify: the scratch folder is the committed results folder; choose another --scratch", file=sys.stderr)
        return 2
    if not a.compare_only:
        from .reproduce import run

        if not committed.is_dir():
            print(f"verify: no committed results in {committed}", file=sys.stderr)
            return 2
        print(f"[verify] rerunning {profile} {'notebooks ' + ' '.join(a.only) if a.only else ''} into {scratch}")
        if run(profile, a.only, device=a.device, out=scratch) != 0:
            print("verify: the rerun failed (see above); nothing was compared", file=sys.stderr)
            return 2
    try:
        report = compare(committed, scratch, profile, a.only)
    except VerifyError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    (scratch / "verify_report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(table(report))
    print(f"report: {scratch / 'verify_report.json'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
