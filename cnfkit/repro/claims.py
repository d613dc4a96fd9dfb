"""The papers' qualitative claims, checked by code against a profile's results JSONs.

``write_claims(profile)`` writes ``results/<profile>/claims.json`` and ``claims.md``: one row per claim
with what the paper says, the numbers we measured (read from ``results/<profile>/*.json``, never typed)
and ``holds`` (``True`` / ``False``, or ``None`` when the results needed are missing).  The tolerances
that make "near" or "within noise" precise are stated in each claim's text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paper import paper_numbers
from .results import with_spread

__all__ = ["CLAIMS", "Claim", "claims_markdown", "evaluate_claims", "why", "write_claims"]

ROOT = Path(__file__).resolve().parents[2]  # the repository (cnfkit/repro/ is two levels down)


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    says: str
    check: Callable[
        [dict[str, Any]], tuple[str, bool] | None
    ]  # results -> (what we measured, holds), None: not measured
    curves: tuple[
        tuple[str, tuple[str | int, ...]], ...
    ] = ()  # (label, key path in the results) of the learning curves behind it


def _get(d: Any, *keys: str | int) -> Any:
    for k in keys:
        found = (isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d)) or (
            isinstance(d, dict) and k in d
        )
        if not found:
            return None
        d = d[k]
    return d


def _sr_bpd(results, which: str):
    sr = results.get("super_resolution")
    if not sr:
        return None
    if which == "held-out":
        if not sr.get("table1"):
            return None
        key = max(sr["table1"])  # the largest size
        row = sr["table1"][key]
        cnf, base = row.get("CNF"), row.get("Factorized LL")
        where = key
    else:
        cnf, base = _get(sr, "table2", which, "CNF", "bpd"), _get(sr, "table2", which, "LL Baseline", "bpd")
        where = which
    if cnf is None or base is None:
        return None
    return f"{where}: CNF {cnf:.3f} vs factorized {base:.3f} bpd", cnf < base


def _sr_claim(which: str) -> Callable:
    return lambda r: _sr_bpd(r, which)


def _drive_bpd(results, other: str):
    s = _get(results.get("drive"), "summary")
    if not s or "cnf" not in s or other not in s:
        return None
    return f"CNF {s['cnf']['bpd']:.4f} vs {other} {s[other]['bpd']:.4f} bpd", s["cnf"]["bpd"] < s[other]["bpd"]


def _drive_f(results):
    s = _get(results.get("drive"), "summary")
    if not s or "cnf" not in s or "factored" not in s:
        return None
    c, f = s["cnf"], s["factored"]
    noise = max(0.01, 2 * max(c.get("f_score_std", 0.0), f.get("f_score_std", 0.0)))
    nc, nf = len(c.get("seeds", [0])), len(f.get("seeds", [0]))
    return (
        f"CNF {with_spread(c['f_score'], c.get('f_score_std'), nc, 3)} vs factored "
        f"{with_spread(f['f_score'], f.get('f_score_std'), nf, 3)} (noise: {noise:.3f})"
    ), c["f_score"] >= f["f_score"] - noise


def _drive_pr_human(results):
    s = _get(results.get("drive"), "summary")
    c, f = (
        _get(s, "cnf", "pr_distance_to_human", "energy_distance"),
        _get(s, "factored", "pr_distance_to_human", "energy_distance"),
    )
    if c is None or f is None:
        return None
    return f"energy distance of single-sample (P, R) points to the 2nd grader's: CNF {c:.4f} vs factored {f:.4f}", c < f


def _posterior_mean(results):
    pm = _get(results.get("super_resolution"), "posterior_mean")
    if not pm:
        return None
    mean = next((v for k, v in pm.items() if k.startswith("CNF mean")), None)
    base = pm.get("LL Baseline (mode)")
    if not mean or not base or mean.get("psnr") is None or base.get("psnr") is None:
        return None
    text = f"PSNR of the CNF posterior mean {mean['psnr']:.2f} dB vs the baseline's mode {base['psnr']:.2f} dB"
    return text, mean["psnr"] > base["psnr"]


def _forward_accuracy(name: str) -> Callable:
    """ "Reaches the paper's accuracy", one-sided: ours >= paper - 2 SE of the difference of two binomial accuracies
    on test sets of our size (the paper's number is itself one draw of that size); a model better than the paper
    holds.  The same rule for every dataset, fixed before any run."""

    def check(results):
        d = _get(results.get("mnist"), "datasets", name)
        acc = None if d is None else d.get("accuracy_forward_pass")
        if acc is None:
            return None
        n = int(d.get("n_test", 10000))
        paper = paper_numbers("xiao_table1_accuracy")[name]
        se = math.sqrt(acc * (1 - acc) / n + paper * (1 - paper) / n)
        z = (acc - paper) / se
        text = f"{acc:.4f} vs paper {paper:.3f}: difference {z:+.1f} SE (binomial, n={n}; holds above -2 SE)"
        return text, z >= -2.0

    return check


def _xiao_vs_inn(results):
    g = _get(results.get("theory"), "gmm")
    if not g or not all(k in g for k in ("xiao", "inn_full", "inn_forward_only")):
        return None
    x, full, fwd = g["xiao"]["posterior_mmd"], g["inn_full"]["posterior_mmd"], g["inn_forward_only"]["posterior_mmd"]
    floor = _get(g, "true_posterior", "posterior_mmd") or 0.0
    matches = x <= max(1.5 * full, full + 0.01)
    fails = fwd > max(10 * max(floor, 1e-3), 5 * full)
    return (
        (
            f"posterior MMD: single loss {x:.3f}, INN all losses {full:.3f}, INN forward losses only {fwd:.3f} "
            f"(exact samples {floor:.3f})"
        ),
        matches and fails,
    )


def _binary_vs_uniform(results):
    m = _get(results.get("binary_dequantization"), "images")
    if not m or "cnf" not in m or "cnf_uniform" not in m:
        return None
    b, u = m["cnf"]["test_bpd"], m["cnf_uniform"]["test_bpd"]
    return f"binary shapes: binary dequantization {b:.4f} vs uniform {u:.4f} bpd", b < u


def _curve_text(label: str, c: dict[str, Any] | None) -> str | None:
    if not c:
        return None
    drop = c["relative_drop"]
    state = "still falling" if drop > 0.005 else ("flat" if drop > -0.005 else "rising")
    return (
        f"{label}: training loss {state} at step {c['steps']} ({c['loss_fifth_before']:.4g} -> "
        f"{c['loss_last_fifth']:.4g} over the last two fifths of the logged steps, {100 * drop:+.1f}%)"
    )


def why(claim: Claim, results: dict[str, Any]) -> str | None:
    """For a claim that does not hold: the measurements that say why, read from the results (the
    learning curves of the models behind it: a loss still falling means training stopped early)."""
    texts = [_curve_text(label, _get(results, *path)) for label, path in claim.curves]
    return "; ".join(t for t in texts if t) or None


_SR_CURVES = (
    ("CNF", ("super_resolution", "learning_curves", "cnf_32")),
    ("factorized baseline", ("super_resolution", "learning_curves", "baseline_32")),
)
_DRIVE_CURVES = tuple(
    (label, ("drive", "runs", name, 0, "learning_curve"))
    for label, name in (("CNF", "cnf"), ("factored", "factored"), ("CNF uniform", "cnf_uniform"))
)


def _mnist_curves(name: str) -> tuple[tuple[str, tuple[str | int, ...]], ...]:
    return tuple(
        (f"{name} {label}", ("mnist", "datasets", name, "learning_curves", key))
        for label, key in (("auto-encoder", "autoencoder"), ("Xiao flow", "xiao_flow"))
    )


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "sr_bpd_heldout",
        "Winkler et al. Table 1",
        "The CNF has lower test bits/dim than the factorized discretized-logistic baseline.",
        _sr_claim("held-out"),
        _SR_CURVES,
    ),
    *(
        Claim(
            f"sr_bpd_{s.lower()}",
            "Winkler et al. Table 2",
            f"The CNF has lower bits/dim than the factorized baseline on {s}.",
            _sr_claim(s),
            _SR_CURVES,
        )
        for s in ("Set5", "Set14", "BSD100")
    ),
    Claim(
        "sr_posterior_mean_psnr",
        "Winkler et al. Table 2",
        "The CNF beats the factorized baseline in PSNR (tested fairly: the "
        "posterior mean of CNF samples, an approximate minimum-MSE estimate, against the baseline's mode).",
        _posterior_mean,
        _SR_CURVES,
    ),
    Claim(
        "drive_bpd_vs_factored",
        "Winkler et al. Table 3",
        "On DRIVE the CNF has lower bits/dim than the factored model.",
        lambda r: _drive_bpd(r, "factored"),
        _DRIVE_CURVES,
    ),
    Claim(
        "drive_bpd_vs_uniform",
        "Winkler et al. Table 3",
        "Binary dequantization gives the CNF lower bits/dim than uniform dequantization.",
        lambda r: _drive_bpd(r, "cnf_uniform"),
        _DRIVE_CURVES,
    ),
    Claim(
        "drive_max_f",
        "Winkler et al. Table 3",
        "The CNF's maximal F-score is on par with or above the factored model's (here: at "
        "least the factored F minus the noise, max(0.01, 2 seed std)).",
        _drive_f,
        _DRIVE_CURVES,
    ),
    Claim(
        "drive_samples_near_human",
        "Winkler et al. Fig 5",
        "Single CNF samples lie closer to the human grader in precision-recall space than the factored model's "
        "samples.",
        _drive_pr_human,
        _DRIVE_CURVES,
    ),
    Claim(
        "binary_deq_beats_uniform",
        "Winkler et al. sec. 3.2",
        "Binary dequantization gives lower bits/dim than uniform dequantization (synthetic binary images).",
        _binary_vs_uniform,
        (
            ("binary", ("binary_dequantization", "images", "cnf", "learning_curve")),
            ("uniform", ("binary_dequantization", "images", "cnf_uniform", "learning_curve")),
        ),
    ),
    Claim(
        "xiao_mnist_forward",
        "Xiao et al. Table 1",
        "Classification by the forward pass reaches the paper's MNIST accuracy (one-sided, within 2 binomial SE).",
        _forward_accuracy("MNIST"),
        _mnist_curves("MNIST"),
    ),
    Claim(
        "xiao_fashion_forward",
        "Xiao et al. Table 1",
        "Classification by the forward pass reaches the paper's Fashion-MNIST accuracy (one-sided, within 2 binomial "
        "SE).",
        _forward_accuracy("FashionMNIST"),
        _mnist_curves("FashionMNIST"),
    ),
    Claim(
        "xiao_single_loss_vs_inn",
        "Xiao et al. Fig 5.2",
        "One likelihood loss matches the 4-loss INN's posterior quality (MMD within 1.5x or +0.01), while the INN "
        "trained with forward losses only fails (MMD above 10x the exact-sample floor and 5x the full INN's).",
        _xiao_vs_inn,
        tuple(
            (label, ("theory", "gmm", k, "learning_curve"))
            for label, k in (
                ("single loss", "xiao"),
                ("INN all losses", "inn_full"),
                ("INN forward only", "inn_forward_only"),
            )
        ),
    ),
)


def _load_results(folder: Path) -> dict[str, Any]:
    out = {}
    for name in ("theory", "mnist", "binary_dequantization", "drive", "super_resolution"):
        p = folder / f"{name}.json"
        if p.exists():
            out[name] = json.loads(p.read_text())
    return out


def evaluate_claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in CLAIMS:
        got = c.check(results)
        holds = None if got is None else bool(got[1])
        rows.append(
            {
                "id": c.id,
                "paper": c.paper,
                "says": c.says,
                "measured": None if got is None else got[0],
                "holds": holds,
                "why_not": why(c, results) if holds is False else None,
            }
        )
    return rows


def claims_markdown(rows: list[dict[str, Any]], profile: str) -> str:
    mark = {True: "yes", False: "**no**", None: "not measured"}
    lines = [
        f"Claims of the papers checked against `results/{profile}/` ({profile} profile"
        + (", reduced scale" if profile == "quick" else "")
        + "):",
        "",
        "| claim | paper | what the paper says | ours (measured) | holds |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['id']} | {r['paper']} | {r['says']} | {r['measured'] or '-'} | {mark[r['holds']]} |")
    failing = [r for r in rows if r["holds"] is False]
    if failing:
        lines += ["", "Why a claim does not hold here (measured):", ""]
        lines += [f"- **{r['id']}**: {r.get('why_not') or 'no learning curve recorded for it'}" for r in failing]
    return "\n".join(lines) + "\n"


def write_claims(profile: str, folder: Path | None = None) -> list[dict[str, Any]]:
    """Evaluate every claim on ``results/<profile>/`` (or ``folder``); write claims.json and claims.md there."""
    folder = Path(folder) if folder is not None else ROOT / "results" / profile
    rows = evaluate_claims(_load_results(folder))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "claims.json").write_text(json.dumps({"profile": profile, "claims": rows}, indent=1) + "\n")
    (folder / "claims.md").write_text(claims_markdown(rows, profile))
    return rows
