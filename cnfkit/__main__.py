"""Apply a trained model to your own images.

    python -m cnfkit superres --checkpoint results/quick/checkpoints photo.png --samples 4 --temperature 0.8 -o out/
    python -m cnfkit segment  --checkpoint results/quick/checkpoints fundus.png --samples 8 -o out/

``--checkpoint`` is a folder that ``make reproduce`` or the training command line wrote (or one of its
``superres-<digest>`` / ``drive-<digest>`` subfolders): the experiment's configuration is stored in every
checkpoint, so the models are rebuilt exactly as trained.  Checkpoints are read with
:func:`cnfkit.train.read_checkpoint` (sha256-checked, ``weights_only``: a file cannot run code).

* ``superres``: each input image is the low-resolution image; written per input: ``<name>_sample<k>.png``
  (CNF samples at ``--temperature``), ``<name>_posterior_mean.png`` (their average), ``<name>_baseline_mode.png``
  (the factorized baseline's most probable image) and ``<name>_bicubic.png`` (MATLAB bicubic), all 2x.
* ``segment``: each input is an RGB fundus image (any size; padded to a multiple of 4 and cropped back):
  ``<name>_sample<k>.png`` (binary vessel maps), ``<name>_mean.png`` (their average, the soft map) and, when the
  factored model's checkpoint is there, ``<name>_factored.png`` (its probability map).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch

from .models.segmentation import FactoredBernoulli, SegmentationCNF
from .models.superres import FactorizedLogisticSR, SRFlow
from .train import CheckpointError, read_checkpoint
from .utils import resolve_device, row_generators

M = TypeVar("M", bound=torch.nn.Module)


def _find(folder: Path, prefix: str, sub: str) -> Path:
    """``folder`` itself if it holds ``sub``, else its single ``<prefix>-*`` subfolder that does."""
    if (folder / sub).is_file():
        return folder
    hits = sorted(p for p in folder.glob(f"{prefix}-*") if (p / sub).is_file())
    if not hits:
        raise SystemExit(
            f"no {prefix} checkpoint ({sub}) under {folder}: train one with make reproduce or "
            f"python -m cnfkit.experiments.{'superres' if prefix == 'superres' else 'drive'}"
        )
    if len(hits) > 1:
        raise SystemExit(
            f"several {prefix} runs under {folder}: choose one with --checkpoint {hits[0]} (or "
            f"{', '.join(map(str, hits[1:]))})"
        )
    return hits[0]


def _load(path: Path, build: Callable[[dict[str, Any]], M], device) -> tuple[M, dict[str, Any]]:
    ckpt = read_checkpoint(path, map_location="cpu")
    user = ckpt.get("fingerprints", {}).get("user") or {}
    if "config" not in user:
        raise CheckpointError(f"{path} records no experiment configuration (written by an older cnfkit): retrain it")
    model = build(user)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), user


def _read_rgb(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


def _save(t: torch.Tensor, path: Path) -> None:
    from PIL import Image

    a = t.detach().cpu().float().clamp(0, 255).round().to(torch.uint8)
    Image.fromarray(a.permute(1, 2, 0).numpy() if a.dim() == 3 and a.shape[0] == 3 else a.squeeze(0).numpy()).save(path)


def superres(a) -> int:
    from .data.imresize import imresize
    from .experiments import superres as sr

    folder = Path(a.checkpoint)
    sizes = sorted({int(p.parent.name.split("_")[1]) for p in folder.rglob("cnf_*/last.pt")})
    if not sizes:
        raise SystemExit(f"no super-resolution checkpoint (cnf_<size>/last.pt) under {folder}")
    size = max(sizes)
    run = _find(folder, "superres", f"cnf_{size}/last.pt")
    device = resolve_device(a.device)

    def build_cnf(user: dict[str, Any]) -> SRFlow:
        return cast(SRFlow, sr.build_models(sr.SRConfig.from_dict(user["config"]))["cnf"])

    def build_baseline(user: dict[str, Any]) -> FactorizedLogisticSR:
        return cast(FactorizedLogisticSR, sr.build_models(sr.SRConfig.from_dict(user["config"]))["baseline"])

    cnf, user = _load(run / f"cnf_{size}" / "last.pt", build_cnf, device)
    base = None
    if (run / f"baseline_{size}" / "last.pt").is_file():
        base, _ = _load(run / f"baseline_{size}" / "last.pt", build_baseline, device)
    cfg = sr.SRConfig.from_dict(user["config"])
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    multiple = 2**cfg.levels
    for i, path in enumerate(a.images):
        lr = _read_rgb(Path(path))
        hw = (2 * lr.shape[1], 2 * lr.shape[2])
        x = sr._pad(lr.float()[None], multiple // 2).to(device)
        with torch.no_grad():
            feats = cnf.conditioning(x)
            gens = row_generators(a.seed, [(i, j) for j in range(a.samples)], "apply")
            samples = cnf.sample(
                None, temperature=a.temperature, generator=gens, features=feats, num_samples=a.samples
            )[:, :, : hw[0], : hw[1]]
        stem = Path(path).stem
        for j, s in enumerate(samples):
            _save(s, out / f"{stem}_sample{j}.png")
        _save(samples.mean(0), out / f"{stem}_posterior_mean.png")
        if base is not None:
            with torch.no_grad():
                _save(base.mode(x)[0, :, : hw[0], : hw[1]], out / f"{stem}_baseline_mode.png")
        _save(imresize(lr, output_size=hw).float(), out / f"{stem}_bicubic.png")
        print(
            f"{path}: {a.samples} samples at temperature {a.temperature}, posterior mean, baseline mode, bicubic -> "
            f"{out}"
        )
    return 0


def segment(a) -> int:
    from .data.transforms import crop_to, pad_to_multiple
    from .experiments import drive

    folder = Path(a.checkpoint)
    run = _find(folder, "drive", "cnf/seed0/last.pt")
    device = resolve_device(a.device)

    def build_cnf(user: dict[str, Any]) -> SegmentationCNF:
        return cast(SegmentationCNF, drive.build_model("cnf", drive.DriveConfig.from_dict(user["config"])))

    def build_factored(user: dict[str, Any]) -> FactoredBernoulli:
        return cast(FactoredBernoulli, drive.build_model("factored", drive.DriveConfig.from_dict(user["config"])))

    cnf, _ = _load(run / "cnf" / "seed0" / "last.pt", build_cnf, device)
    factored = None
    if (run / "factored" / "seed0" / "last.pt").is_file():
        factored, _ = _load(run / "factored" / "seed0" / "last.pt", build_factored, device)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(a.images):
        img = _read_rgb(Path(path)).float()[None] / 255.0
        x, size = pad_to_multiple(img, 4)
        x = x.to(device)
        with torch.no_grad():
            feats = cnf.conditioning(x)
            gens = row_generators(a.seed, [(i, j) for j in range(a.samples)], "apply")
            maps = cnf.sample(
                None, generator=gens, features=feats, num_samples=a.samples, size=(x.shape[-2], x.shape[-1])
            )
        maps = crop_to(maps, size)
        stem = Path(path).stem
        for j, m in enumerate(maps):
            _save(255 * m, out / f"{stem}_sample{j}.png")
        _save(255 * maps.mean(0), out / f"{stem}_mean.png")
        if factored is not None:
            with torch.no_grad():
                _save(255 * crop_to(factored.soft_map(x), size)[0], out / f"{stem}_factored.png")
        print(f"{path}: {a.samples} vessel-map samples and their mean -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m cnfkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, n_default in (("superres", 4), ("segment", 8)):
        q = sub.add_parser(name, help=f"apply a trained {name} model to images")
        q.add_argument("images", nargs="+", help="input image files (PNG, JPEG)")
        q.add_argument(
            "--checkpoint",
            required=True,
            help="a checkpoint folder written by make reproduce or the training command line",
        )
        q.add_argument("--samples", type=int, default=n_default)
        q.add_argument("-o", "--output", required=True, help="output folder")
        q.add_argument("--device", default="auto")
        q.add_argument("--seed", type=int, default=0)
        if name == "superres":
            q.add_argument("--temperature", type=float, default=0.8)
    a = p.parse_args(argv)
    if a.samples < 1:
        p.error("--samples must be >= 1")
    for f in a.images:
        if not Path(f).is_file():
            p.error(f"no such image: {f}")
    return superres(a) if a.command == "superres" else segment(a)


if __name__ == "__main__":
    sys.exit(main())
