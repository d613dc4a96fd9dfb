"""Markdown tables of the results JSON files, "paper" next to "ours", for the README.

``python -m cnfkit.repro.report --profile quick`` rewrites the part of README.md between
``<!-- results:quick:start -->`` and ``<!-- results:quick:end -->``.  Every number comes from
``results/<profile>/*.json`` (ours) or :mod:`cnfkit.repro.paper` (the papers'); none is typed here.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .paper import paper_numbers
from .results import with_spread

ROOT = Path(__file__).resolve().parents[2]  # the repository (cnfkit/repro/ is two levels down)

__all__ = ["markdown_table", "render", "update_readme"]


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v).replace("|", "\\|")  # a literal | would end the Markdown cell


def markdown_table(header: list[str], rows: list[list[Any]], digits: int = 3) -> str:
    lines = ["| " + " | ".join(_fmt(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c, digits) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    p = folder / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _wall(doc: dict[str, Any]) -> str:
    return f"{doc['provenance']['wall_time_s'] / 60:.1f} min on {doc['provenance']['device']}"


def sr_set_label(ds: str, res: dict[str, Any]) -> str:
    """``"BSD100 (first 20 of 100 images)"`` when a profile evaluates part of a test set, else the set's name."""
    n, available = res.get("_n_images"), res.get("_n_available")
    return (
        f"{ds} (first {n} of {available} images)" if n is not None and available is not None and n < available else ds
    )


def _sr_sample_note(doc: dict[str, Any]) -> str:
    """Which samples Table 2's CNF PSNR/SSIM are over: the temperature and any left out as non-finite."""
    tau = doc.get("config", {}).get("tau")
    counts = [
        f"{ds} {res.get('CNF', {}).get('non_finite_predictions', 0)}/{res.get('_n_images', '?')}"
        for ds, res in doc["table2"].items()
    ]
    return (
        f"\n\nCNF PSNR/SSIM are of one sample per image at temperature {tau}; images whose sample had "
        f"non-finite pixels (left out of the means): {', '.join(counts)}."
    )


def _theory_section(doc: dict[str, Any], tag: str) -> str:
    g = doc["gmm"]
    names = [
        ("xiao", "Xiao et al., single loss"),
        ("inn_full", "INN, 4 losses (Fig 5.2a)"),
        ("inn_forward_only", "INN, forward losses only (5.2b)"),
        ("inn_fast_ramp", "INN, faster ramp (5.2c)"),
        ("cnf", "CNF p(x|label), Bayes' rule"),
        ("true_posterior", "exact posterior samples"),
    ]
    rows = [
        [label, g[k].get("accuracy"), g[k]["posterior_mmd"], g[k]["posterior_true_logp"], g[k].get("train_time_s")]
        for k, label in names
        if k in g
    ]
    r = doc["rotating"]
    return (
        f"**Xiao et al. sec. 5.1, 8-mode inverse problem** ({tag}; the paper reports figures only; "
        f"{_wall(doc)}):\n\n"
        + markdown_table(["method", "label accuracy", "posterior MMD", "mean true log p(x|label)", "train s"], rows)
        + "\n\n**2-D conditional toy** (held-out NLL, nats): "
        + f"CNF {_fmt(r['cnf']['test_nll'])}, factorized Gaussian {_fmt(r['gaussian']['test_nll'])}, true density "
        f"{_fmt(r['true']['test_nll'])}."
    )


def _mnist_section(doc: dict[str, Any], tag: str) -> str:
    paper = paper_numbers("xiao_table1_accuracy")
    rows = [[n, paper[n], d["accuracy_forward_pass"], d["accuracy_cnf_bayes"]] for n, d in doc["datasets"].items()]
    return f"**Xiao et al. Table 1, classification by the forward pass** ({_wall(doc)}):\n\n" + markdown_table(
        ["dataset", "paper", f"{tag} forward pass", f"{tag} CNF + Bayes' rule"], rows, 4
    )


def _binary_dequantization_section(doc: dict[str, Any], tag: str) -> str:
    m = doc["images"]
    rows = [
        ["CNF, binary dequantization", m["cnf"]["test_bpd"]],
        ["CNF, uniform dequantization", m["cnf_uniform"]["test_bpd"]],
        ["factored Bernoulli", m["factored"]["test_bpd"]],
    ]
    return (
        f"**Binary vs uniform dequantization, synthetic binary images** (test bits/dim, {_wall(doc)}):\n\n"
        + markdown_table(["model", f"{tag} bpd"], rows, 4)
    )


def _super_resolution_section(doc: dict[str, Any], tag: str) -> str:
    p1 = paper_numbers("winkler_table1_bpd")
    which = lambda k: "ImageNet32" if ("32x32" in k or "ImageNet32" in k) else "ImageNet64"
    rows = [
        [k, p1[which(k)]["CNF"], v["CNF"], p1[which(k)]["Factorized LL"], v["Factorized LL"]]
        for k, v in doc["table1"].items()
    ]
    p2 = paper_numbers("winkler_table2_sr")
    rows2 = []
    for ds, res in doc["table2"].items():
        for model in ("Bicubic", "LL Baseline", "CNF"):
            r = res.get(model, {})
            rows2.append(
                [
                    sr_set_label(ds, res),
                    model,
                    p2[ds][model].get("bpd"),
                    r.get("bpd"),
                    p2[ds][model]["psnr"],
                    r.get("psnr"),
                    p2[ds][model]["ssim"],
                    r.get("ssim"),
                ]
            )
    return (
        f"**Winkler et al. Table 1, super-resolution bits/dim** ({_wall(doc)}; ours on the stated stand-in):\n\n"
        + markdown_table(["data", "paper CNF", f"{tag} CNF", "paper factorized", f"{tag} factorized"], rows, 3)
        + "\n\n**Winkler et al. Table 2** (bpd on random 128x128 crops; PSNR/SSIM on Y, 2-pixel border):\n\n"
        + markdown_table(
            ["set", "model", "paper bpd", f"{tag} bpd", "paper PSNR", f"{tag} PSNR", "paper SSIM", f"{tag} SSIM"],
            rows2,
            3,
        )
        + _sr_sample_note(doc)
    )


def _drive_section(doc: dict[str, Any], tag: str) -> str:
    from ..experiments.drive import BPD_DEFINITION, PAPER_KEYS

    paper = paper_numbers("winkler_table3_drive")
    s = doc["summary"]
    rows = [
        [
            key,
            paper[key]["bpd"],
            with_spread(s[k]["bpd"], s[k].get("bpd_std"), len(s[k].get("seeds", [0])), 4),
            paper[key]["f_score"],
            with_spread(s[k]["f_score"], s[k].get("f_score_std"), len(s[k].get("seeds", [0])), 3),
        ]
        for k, key in PAPER_KEYS.items()
        if k in s
    ]
    if doc.get("human"):
        rows.append(["Human (2nd observer)", None, None, paper["Human"]["f_score"], doc["human"]["f_score"]])

    return (
        f"**Winkler et al. Table 3, DRIVE** ({_wall(doc)}; {BPD_DEFINITION}; max F inside the field of view):\n\n"
        + markdown_table(["model", "paper bpd", f"{tag} bpd", "paper max F", f"{tag} max F"], rows, 4)
    )


_SECTIONS = (
    ("theory", _theory_section),
    ("mnist", _mnist_section),
    ("binary_dequantization", _binary_dequantization_section),
    ("super_resolution", _super_resolution_section),
    ("drive", _drive_section),
)
"""Each results JSON and the function that renders its tables, in the README's order."""


def render(profile: str, root: Path = ROOT) -> str:
    """The README's results section for ``profile``: the papers' tables "paper" next to "ours", then the
    beyond-the-paper tables, the claims and the wall time per notebook."""
    folder = root / "results" / profile
    tag = f"ours ({profile})"
    parts = [section(doc, tag) for name, section in _SECTIONS if (doc := _load(folder, name))]
    if not parts:
        return f"_No results in results/{profile}/ yet._"
    beyond = render_beyond(folder, tag)
    claims_md = folder / "claims.md"
    times = render_notebook_times(folder, profile)
    return "\n\n".join(
        parts
        + ([beyond] if beyond else [])
        + ([claims_md.read_text().strip()] if claims_md.exists() else [])
        + ([times] if times else [])
    )


def render_notebook_times(folder: Path, profile: str) -> str:
    """The wall time of each notebook's last complete ``make reproduce`` run (``notebook_times.json``) and the total:
    the run's elapsed time where notebooks ran side by side (``reproduce_run.json``, when made at the same commit:
    the side-by-side part's elapsed time plus the report notebooks run after it), else their sum."""
    path = folder / "notebook_times.json"
    if not path.exists():
        return ""
    times = json.loads(path.read_text())
    walls = {stem: t["wall_time_s"] if isinstance(t, dict) else float(t) for stem, t in times.items()}
    rows, commits = [], set()
    for stem, t in sorted(times.items()):
        commits.add(t.get("git_commit", "?") if isinstance(t, dict) else "?")
        rows.append([stem, f"{walls[stem] / 60:.1f}", t.get("threads", "") if isinstance(t, dict) else ""])
    total = sum(walls.values())
    where = ", ".join(sorted(c[:12] + ("-dirty" if c.endswith("-dirty") else "") for c in commits))
    run_path = folder / "reproduce_run.json"
    run = json.loads(run_path.read_text()) if run_path.exists() else None
    if run is not None and commits == {run.get("git_commit")}:
        # the report notebooks ran alone after the side-by-side ones
        after = sum(w for stem, w in walls.items() if stem not in run["started_in_order"])
        rows.append(
            [
                f"**total** (elapsed; {run['side_by_side']} notebooks at a time)",
                f"**{(run['wall_time_s'] + after) / 60:.1f}**",
                "",
            ]
        )
        rows.append(["sum of the notebooks' times", f"{total / 60:.1f}", ""])
    else:
        rows.append(["**total**", f"**{total / 60:.1f}**", ""])
    return f"**Wall time per notebook** (`make reproduce PROFILE={profile}`, commit {where}):\n\n" + markdown_table(
        ["notebook", "minutes", "threads"], rows
    )


def render_beyond(folder: Path, tag: str) -> str:
    """The beyond-the-paper metrics (``cnfkit.probabilistic``) found in the results JSONs, as tables."""
    parts = [section(doc, tag) for name, section in _BEYOND if (doc := _load(folder, name))]
    return "\n\n".join(p for p in parts if p)


def _beyond_drive(doc: dict[str, Any], tag: str) -> str | None:
    from ..experiments.drive import PAPER_KEYS

    if "calibration" not in next(iter(doc["summary"].values()), {}):
        return None
    rows = []
    for k, label in PAPER_KEYS.items():
        if k in doc["summary"]:
            s = doc["summary"][k]
            rows.append(
                [
                    label,
                    s["calibration"]["ece"],
                    (s.get("pr_distance_to_human") or {}).get("energy_distance"),
                    (s.get("ged") or {}).get("ged"),
                    s.get("sample_diversity"),
                    s.get("vessel_width"),
                    s.get("uncertainty_auroc"),
                ]
            )
    h = doc.get("human") or {}
    if "vessel_width_annotation" in h:
        rows.append(["1st grader (annotation)", None, None, None, None, h["vessel_width_annotation"], None])
        rows.append(
            ["2nd grader", None, None, None, h["ged_between_annotators"], h["vessel_width_second_observer"], None]
        )
    return f"**Beyond the paper, DRIVE** ({tag}; inside the FOV; first seed):\n\n" + markdown_table(
        [
            "model",
            "ECE",
            "PR energy distance to 2nd grader",
            "GED to both graders",
            "sample diversity (1-IoU)",
            "vessel width px",
            "uncertainty AUROC for errors",
        ],
        rows,
        3,
    )


def _beyond_super_resolution(doc: dict[str, Any], tag: str) -> str | None:
    if "lr_psnr" not in doc:
        return None
    keys = [k for k in doc["lr_psnr"] if not k.startswith("_")]
    rows = [[k, doc["lr_psnr"][k], doc["diversity"].get(k)] for k in keys]
    rows2 = [[k, v.get("psnr"), v.get("ssim")] for k, v in doc["posterior_mean"].items()]
    return (
        f"**Beyond the paper, super-resolution** ({tag}; {doc.get('probabilistic_set', 'Set5')}): LR-consistency "
        "(PSNR of the downscaled prediction against the LR input, dB, capped at 100; NTIRE's bar is 45) and "
        "diversity (mean per-pixel std across samples):\n\n"
        + markdown_table(["prediction", "LR-PSNR", "diversity"], rows, 2)
        + "\n\nPosterior mean (approximates the minimum-MSE estimate) against single samples and the baseline's "
        "mode:\n\n" + markdown_table(["prediction", "PSNR", "SSIM"], rows2, 3)
    )


def _beyond_mnist(doc: dict[str, Any], tag: str) -> str | None:
    if not all("calibration" in d for d in doc["datasets"].values()):
        return None
    rows = [
        [n, kind, c["accuracy"], c["ece"], c["nll"]]
        for n, d in doc["datasets"].items()
        for kind, c in d["calibration"].items()
    ]
    return f"**Beyond the paper, calibration of the classifiers** ({tag}):\n\n" + markdown_table(
        ["dataset", "classifier", "accuracy", "ECE", "NLL of the true label"], rows, 4
    )


def _beyond_theory(doc: dict[str, Any], tag: str) -> str | None:
    if not all("mode_mass_error" in m for m in doc["gmm"].values()):
        return None
    rows = [[k, m["mode_mass_error"]] for k, m in doc["gmm"].items()]
    return (
        f"**Beyond the paper, 8-mode posteriors** ({tag}): per-mode mass error (total variation between the "
        "fraction of posterior samples nearest each mode and the truth, 0 = all on the right mode):\n\n"
        + markdown_table(["method", "mode mass error"], rows, 3)
    )


_BEYOND = (
    ("drive", _beyond_drive),
    ("super_resolution", _beyond_super_resolution),
    ("mnist", _beyond_mnist),
    ("theory", _beyond_theory),
)


def update_readme(profile: str, readme: Path | None = None, root: Path | None = None) -> bool:
    """Replace the README's results section for ``profile``; returns whether it changed."""
    if root is None:
        root = readme.parent if readme is not None else ROOT
    if readme is None:
        readme = root / "README.md"
    start, end = f"<!-- results:{profile}:start -->", f"<!-- results:{profile}:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise ValueError(f"README has no {start} ... {end} section")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}\n{render(profile, root)}\n{end}{tail}"
    readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnfkit.repro.report", description=__doc__)
    p.add_argument("--profile", default="quick")
    p.add_argument("--print", action="store_true", help="print instead of updating README.md")
    a = p.parse_args(argv)
    if a.print:
        print(render(a.profile))
    else:
        print("README.md updated" if update_readme(a.profile) else "README.md unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# --- the papers' tables, "paper" next to "ours" (used by notebooks/90_tables_and_figures) ---------


def paper_tables(profile: str, root: Path = ROOT) -> dict[str, Any]:
    """Winkler et al. Tables 1-3 and Xiao et al. Table 1 as DataFrames from the results JSONs (each built by its
    experiment's driver, as its notebook shows it); missing results are NaN."""
    from ..experiments import drive, mnist
    from ..experiments import superres as sr

    folder = root / "results" / profile
    sr_doc = _load(folder, "super_resolution")
    return {
        "winkler_table1": sr.paper_table1(sr_doc, profile),
        "winkler_table2": sr.paper_table2(sr_doc, profile),
        "winkler_table3": drive.paper_table(_load(folder, "drive"), profile),
        "xiao_table1": mnist.paper_table(_load(folder, "mnist"), profile),
    }


def write_tables(profile: str, root: Path = ROOT) -> list[Path]:
    """Write every table as Markdown and LaTeX into ``results/<profile>/tables/``."""
    folder = root / "results" / profile / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in paper_tables(profile, root).items():
        header = [df.index.name or ""] + [str(c) for c in df.columns]
        rows = [
            [idx] + [None if (isinstance(v, float) and math.isnan(v)) else v for v in row]
            for idx, row in zip(df.index, df.itertuples(index=False))
        ]
        note = f"Reduced-scale run (profile {profile}); '-' = not produced yet.\n\n" if profile != "full" else ""
        (folder / f"{name}.md").write_text(note + markdown_table(header, rows, 4) + "\n")
        (folder / f"{name}.tex").write_text(df.to_latex(na_rep="--", float_format="%.4g", escape=True))
        written += [folder / f"{name}.md", folder / f"{name}.tex"]
    return written
