"""Markdown tables of the results JSON files, "paper" next to "ours", for the README.

``python -m cnfkit.report --profile quick`` rewrites the part of README.md between
``<!-- results:quick:start -->`` and ``<!-- results:quick:end -->``.  Every number comes from
``results/<profile>/*.json`` (ours) or :mod:`cnfkit.paper` (the papers'); none is typed here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .paper import paper_numbers

ROOT = Path(__file__).resolve().parent.parent

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


def render(profile: str, root: Path = ROOT) -> str:
    folder = root / "results" / profile
    tag = f"ours ({profile})"
    parts: list[str] = []
    if doc := _load(folder, "theory"):
        g = doc["gmm"]
        names = [("xiao", "Xiao et al., single loss"), ("inn_full", "INN, 4 losses (Fig 5.2a)"),
                 ("inn_forward_only", "INN, forward losses only (5.2b)"), ("inn_fast_ramp", "INN, faster ramp (5.2c)"),
                 ("cnf", "CNF p(x|label), Bayes' rule"), ("true_posterior", "exact posterior samples")]
        rows = [[label, g[k].get("accuracy"), g[k]["posterior_mmd"], g[k]["posterior_true_logp"], g[k].get("train_time_s")] for k, label in names if k in g]
        r = doc["rotating"]
        parts.append(
            f"**Xiao et al. sec. 5.1, 8-mode inverse problem** ({tag}; the paper reports figures only; {_wall(doc)}):\n\n"
            + markdown_table(["method", "label accuracy", "posterior MMD", "mean true log p(x|label)", "train s"], rows)
            + "\n\n**2-D conditional toy** (held-out NLL, nats): "
            + f"CNF {_fmt(r['cnf']['test_nll'])}, factorized Gaussian {_fmt(r['gaussian']['test_nll'])}, true density {_fmt(r['true']['test_nll'])}."
        )
    if doc := _load(folder, "mnist"):
        paper = paper_numbers("xiao_table1_accuracy")
        rows = [[n, paper[n], d["accuracy_forward_pass"], d["accuracy_cnf_bayes"]] for n, d in doc["datasets"].items()]
        parts.append(f"**Xiao et al. Table 1, classification by the forward pass** ({_wall(doc)}):\n\n"
                     + markdown_table(["dataset", "paper", f"{tag} forward pass", f"{tag} CNF + Bayes' rule"], rows, 4))
    if doc := _load(folder, "binary_dequantization"):
        m = doc["images"]
        rows = [["CNF, binary dequantization", m["cnf"]["test_bpd"]], ["CNF, uniform dequantization", m["cnf_uniform"]["test_bpd"]],
                ["factored Bernoulli", m["factored"]["test_bpd"]]]
        parts.append(f"**Binary vs uniform dequantization, synthetic binary images** (test bits/dim, {_wall(doc)}):\n\n"
                     + markdown_table(["model", f"{tag} bpd"], rows, 4))
    if doc := _load(folder, "drive"):
        paper = paper_numbers("winkler_table3_drive")
        s = doc["summary"]
        rows = [[key, paper[key]["bpd"], f"{s[k]['bpd']:.4f} ± {s[k]['bpd_std']:.4f}", paper[key]["f_score"], f"{s[k]['f_score']:.3f} ± {s[k]['f_score_std']:.3f}"]
                for k, key in (("factored", "Factored"), ("cnf_uniform", "CNF Uniform"), ("cnf", "CNF")) if k in s]
        if doc.get("human"):
            rows.append(["Human (2nd observer)", None, None, paper["Human"]["f_score"], doc["human"]["f_score"]])
        parts.append(f"**Winkler et al. Table 3, DRIVE** ({_wall(doc)}):\n\n"
                     + markdown_table(["model", "paper bpd", f"{tag} bpd", "paper max F", f"{tag} max F"], rows, 4))
    if not parts:
        return f"_No results in results/{profile}/ yet._"
    return "\n\n".join(parts)


def update_readme(profile: str, readme: Path = ROOT / "README.md") -> bool:
    start, end = f"<!-- results:{profile}:start -->", f"<!-- results:{profile}:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise ValueError(f"README has no {start} ... {end} section")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}\n{render(profile)}\n{end}{tail}"
    readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnfkit.report", description=__doc__)
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
