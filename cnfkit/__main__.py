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

Output names keep the input's stem (``photo.png`` -> ``photo_sample0.png``); two inputs with the same stem
(``x.png x.jpg``) keep their extensions (``x_png_sample0.png``, ``x_jpg_sample0.png``), and the same file given twice
is refused.  Each image's outputs are written to a temporary folder and moved into place only when all of them are
complete: a failed image leaves nothing behind, the others are still processed, and the exit status is 1 if any
failed.  A user error (a missing, corrupt or oversized image, an unusable checkpoint, output folder or device) is
one line naming the file and what to do; ``--debug`` shows the traceback.

**Memory.**  An image larger than ``--max-pixels`` (default 16 megapixels) is refused from its header, before it is
decoded.  ``superres`` runs in tiles of ``--tile`` LR pixels with a margin of the model's receptive field, measured
on the loaded model (:mod:`cnfkit.tiling`), so its peak memory is that of one tile plus the uint8 outputs: the same
result as a whole-image run away from the border, in bounded memory.  ``segment``'s model normalises over the whole
image (InstanceNorm in every coupling, the paper's Table 7): it cannot be tiled without changing its output, so it
runs whole images, bounded by ``--max-pixels``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import Tensor

from .config import ConfigError
from .models.segmentation import FactoredBernoulli, SegmentationCNF
from .models.superres import FactorizedLogisticSR, SRFlow
from .train import CheckpointError, read_checkpoint
from .utils import resolve_device, row_generators

M = TypeVar("M", bound=torch.nn.Module)
# refused from the header, before decoding: a 16-megapixel LR image gives 64-megapixel outputs (~1.4 GB with 4 samples)
DEFAULT_MAX_PIXELS = {"superres": 16_000_000, "segment": 4_000_000}
MIN_SIDE = {"superres": 4, "segment": 8}  # smaller images cannot pass the squeezes / the conditioner's pooling


class UserError(Exception):
    """Something the user can fix: printed as one line naming the file and what to do (no traceback)."""


# --- inputs ---------------------------------------------------------------------------------------


def _read_rgb(path: Path, max_pixels: int, min_side: int) -> Tensor:
    """The image as uint8 ``[3, H, W]``; oversized images are refused from their header, before decoding."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = max(max_pixels, 89_478_485)  # our limit decides, not PIL's bomb warning
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise UserError(
                    f"{path}: {w}x{h} is {w * h / 1e6:.1f} megapixels, over --max-pixels {max_pixels} "
                    f"({max_pixels / 1e6:g} MP); downscale it or raise --max-pixels (memory grows with the pixels)"
                )
            if min(w, h) < min_side:
                raise UserError(f"{path}: {w}x{h} is too small: this model needs at least {min_side}x{min_side}")
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).contiguous()
    except UserError:
        raise
    except UnidentifiedImageError:
        raise UserError(
            f"{path}: not an image that can be read (PNG, JPEG, ...): empty, or another kind of file"
        ) from None
    except Image.DecompressionBombError as exc:
        raise UserError(f"{path}: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: the image is truncated or corrupt ({exc})") from None


def _output_names(images: list[str]) -> list[str]:
    """The output stem of each input: its stem, or stem + extension where two inputs share a stem."""
    resolved = [Path(p).resolve() for p in images]
    for i, p in enumerate(resolved):
        if p in resolved[:i]:
            raise UserError(f"{images[i]} is given twice")
    stems = [Path(p).stem for p in images]
    names = [
        s if stems.count(s) == 1 else f"{s}_{Path(p).suffix.lstrip('.') or 'noext'}" for s, p in zip(stems, images)
    ]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        same = [p for p, n in zip(images, names) if n == clash[0]]
        raise UserError(f"{' and '.join(same)} would write the same output files ({clash[0]}_*): rename one")
    return names


# --- outputs --------------------------------------------------------------------------------------


def _output_dir(path: str) -> tuple[Path, bool]:
    """The output folder, created and checked writable; and whether it was created here."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder: choose another -o")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to the output folder {out} ({exc.strerror or exc}): choose another -o") from None
    return out, created


def _png(t: Tensor):
    from PIL import Image

    a = t.detach().cpu()
    if a.dtype != torch.uint8:
        a = a.float().clamp(0, 255).round().to(torch.uint8)
    return Image.fromarray(a.permute(1, 2, 0).numpy() if a.dim() == 3 and a.shape[0] == 3 else a.squeeze(0).numpy())


def _write_all(out: Path, stem: str, images: dict[str, Tensor]) -> None:
    """Every output of one input, written to a temporary folder and moved into place only when all are complete."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.partial.", dir=out))
    try:
        for name, t in images.items():
            _png(t).save(tmp / f"{stem}_{name}.png")
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    except OSError as exc:
        raise UserError(f"writing the outputs of {stem} to {out} failed ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- checkpoints ----------------------------------------------------------------------------------


def _find(folder: Path, prefix: str, sub: str) -> Path:
    """``folder`` itself if it holds ``sub``, else its single ``<prefix>-*`` subfolder that does."""
    if not folder.is_dir():
        raise UserError(f"--checkpoint {folder} is not a folder: give the folder make reproduce or training wrote")
    if (folder / sub).is_file():
        return folder
    hits = sorted(p for p in folder.glob(f"{prefix}-*") if (p / sub).is_file())
    if not hits:
        raise UserError(
            f"no {prefix} checkpoint ({sub}) under {folder}: train one (README, 'Apply a trained model') with "
            f"python -m cnfkit.experiments.{'superres' if prefix == 'superres' else 'drive'} --profile smoke"
        )
    if len(hits) > 1:
        raise UserError(f"several {prefix} runs under {folder}: choose one with --checkpoint {hits[0]} (or {hits[1]})")
    return hits[0]


def _load(path: Path, build: Callable[[dict[str, Any]], M], device: torch.device) -> tuple[M, dict[str, Any]]:
    """The model a checkpoint holds.  Its stored configuration is validated before anything is allocated: the model
    it describes is built on the meta device and must have exactly the checkpoint's tensor shapes (a corrupt or
    foreign configuration cannot make us allocate a model its file does not hold)."""
    try:
        ckpt = read_checkpoint(path, map_location="cpu")
    except CheckpointError as exc:
        raise UserError(str(exc)) from None
    user = ckpt.get("fingerprints", {}).get("user") or {}
    state = ckpt.get("model")
    if "config" not in user or not isinstance(state, dict):
        raise UserError(f"{path} records no experiment configuration or model (an older or foreign file): retrain it")
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in build(user).state_dict().items()}
    except (ConfigError, TypeError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: its stored configuration is not valid ({exc}): retrain or choose another") from None
    stored = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, Tensor)}
    if shapes != stored:
        bad = sorted(set(shapes) ^ set(stored)) or sorted(k for k in shapes if shapes[k] != stored[k])
        raise UserError(
            f"{path}: its weights do not match the model its stored configuration describes (e.g. {bad[0]}): "
            "the checkpoint is corrupt or of another model"
        )
    model = build(user)
    model.load_state_dict(state)
    return model.to(device).eval(), user


def _tiles_progress(label: str) -> Callable[[Iterator[Any], int], Iterator[Any]]:
    def wrap(it: Iterator[Any], n: int) -> Iterator[Any]:
        if n == 1:
            return it
        from tqdm.auto import tqdm

        return iter(tqdm(it, total=n, desc=label, unit="tile", leave=False))

    return wrap


# --- the two commands -----------------------------------------------------------------------------


def _superres_models(a, device: torch.device) -> tuple[SRFlow, FactorizedLogisticSR | None, int]:
    """The CNF, the baseline (when its checkpoint is there) and the LR multiple the squeezes need."""
    from .experiments import superres as sr

    folder = Path(a.checkpoint)
    sizes = sorted(
        {int(m.group(1)) for p in folder.rglob("cnf_*/last.pt") if (m := re.fullmatch(r"cnf_(\d+)", p.parent.name))}
    )
    if not sizes:
        raise UserError(f"no super-resolution checkpoint (cnf_<size>/last.pt) under {folder}: train one first (README)")
    size = max(sizes)
    run = _find(folder, "superres", f"cnf_{size}/last.pt")

    def build_cnf(user: dict[str, Any]) -> SRFlow:
        return sr.build_models(sr.SRConfig.from_dict(user["config"]))["cnf"]

    def build_base(user: dict[str, Any]) -> FactorizedLogisticSR:
        return sr.build_models(sr.SRConfig.from_dict(user["config"]))["baseline"]

    cnf, user = _load(run / f"cnf_{size}" / "last.pt", build_cnf, device)
    base = None
    if (run / f"baseline_{size}" / "last.pt").is_file():
        base, _ = _load(run / f"baseline_{size}" / "last.pt", build_base, device)
    multiple = 2 ** sr.SRConfig.from_dict(user["config"]).levels // 2
    return cnf, base, multiple


def _superres_setup(a, device: torch.device) -> Callable[[Tensor, int], dict[str, Tensor]]:
    from .data.imresize import imresize
    from .data.transforms import crop_to, pad_to_multiple
    from .models.superres import _lr_input
    from .tiling import apply_tiled, receptive_radius

    cnf, base, multiple = _superres_models(a, device)

    def zero_noise(x: Tensor) -> Tensor:  # the CNF at temperature 0: deterministic, differentiable
        return cnf.flow._sample(_lr_input(x.to(device)), num_samples=None, temperature=0.0, generator=None)[0]

    margins: list[int] = []

    def margin() -> int:
        """The models' receptive radius, measured once, when the first image needs more than one tile."""
        if not margins:
            radius = receptive_radius(zero_noise, 3, scale=2, multiple=multiple)
            if base is not None:
                mean = lambda x: base.params(x.to(device))[0]
                radius = max(radius, receptive_radius(mean, 3, scale=2, multiple=multiple))
            margins.append(max(radius, 4))  # bicubic's kernel reaches 2 LR pixels
        return margins[0]

    def one_image(lr: Tensor, i: int) -> dict[str, Tensor]:
        x, hw = pad_to_multiple(lr.float()[None], multiple)

        def tile(crop: Tensor, k: int) -> dict[str, Tensor]:
            c = crop.to(device)
            with torch.no_grad():
                gens = row_generators(a.seed, [(i, k, j) for j in range(a.samples)], "apply")
                feats = cnf.conditioning(c)
                s = cnf.sample(None, temperature=a.temperature, generator=gens, features=feats, num_samples=a.samples)
                got = {"sample": s.to(torch.uint8), "posterior_mean": s.mean(0, keepdim=True).round().to(torch.uint8)}
                if base is not None:
                    got["baseline_mode"] = base.mode(c).clamp(0, 255).round().to(torch.uint8)
            got["bicubic"] = imresize(crop.round().to(torch.uint8), scale=2.0).to(torch.uint8)
            return got

        whole = max(x.shape[-2:]) <= a.tile  # one tile: no margin to measure
        outs = apply_tiled(
            tile, x, tile=a.tile, margin=0 if whole else margin(), multiple=multiple, scale=2,
            progress=_tiles_progress(f"image {i}"),
        )  # fmt: skip
        full = (2 * hw[0], 2 * hw[1])
        res = {f"sample{j}": crop_to(outs["sample"][j], full) for j in range(a.samples)}
        res |= {k: crop_to(outs[k][0], full) for k in ("posterior_mean", "baseline_mode", "bicubic") if k in outs}
        return res

    return one_image


def _segment_setup(a, device: torch.device) -> Callable[[Tensor, int], dict[str, Tensor]]:
    from .data.transforms import crop_to, pad_to_multiple
    from .experiments import drive

    run = _find(Path(a.checkpoint), "drive", "cnf/seed0/last.pt")

    def build(name: str) -> Callable[[dict[str, Any]], Any]:
        return lambda user: drive.build_model(name, drive.DriveConfig.from_dict(user["config"]))

    cnf, _ = _load(
        run / "cnf" / "seed0" / "last.pt", cast(Callable[[dict[str, Any]], SegmentationCNF], build("cnf")), device
    )
    factored = None
    if (run / "factored" / "seed0" / "last.pt").is_file():
        f_build = cast(Callable[[dict[str, Any]], FactoredBernoulli], build("factored"))
        factored, _ = _load(run / "factored" / "seed0" / "last.pt", f_build, device)

    def one_image(rgb: Tensor, i: int) -> dict[str, Tensor]:
        x, size = pad_to_multiple(rgb.float()[None] / 255.0, 4)
        x = x.to(device)
        with torch.no_grad():
            feats = cnf.conditioning(x)
            maps = []
            for j in range(a.samples):  # one at a time: memory of one sample, whatever --samples
                gen = row_generators(a.seed, [(i, j)], "apply")
                maps.append(
                    crop_to(cnf.sample(None, generator=gen, features=feats, size=(x.shape[-2], x.shape[-1])), size)[
                        0
                    ].cpu()
                )
            res = {f"sample{j}": 255 * m for j, m in enumerate(maps)}
            res["mean"] = 255 * torch.stack(maps).mean(0)
            if factored is not None:
                res["factored"] = 255 * crop_to(factored.soft_map(x), size)[0]
        return res

    return one_image


def _apply(a) -> int:
    names = _output_names(a.images)
    device = _device(a.device)
    one_image = (_superres_setup if a.command == "superres" else _segment_setup)(a, device)
    out, created = _output_dir(a.output)
    failed = 0
    for i, (path, stem) in enumerate(zip(a.images, names)):
        try:
            img = _read_rgb(Path(path), a.max_pixels, MIN_SIDE[a.command])
            _write_all(out, stem, one_image(img, i))
            print(f"{path}: {a.samples} samples and their summaries -> {out}/{stem}_*.png")
        except UserError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
        except (RuntimeError, MemoryError) as exc:  # e.g. out of memory on a large image: report it, go on
            if a.debug:
                raise
            failed += 1
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"error: {path}: {msg} (try a smaller --tile or --max-pixels, or --debug)", file=sys.stderr)
    if created and not any(out.iterdir()):
        out.rmdir()
    if failed:
        print(f"{failed} of {len(a.images)} image(s) failed; the others' outputs are in {out}", file=sys.stderr)
    return 1 if failed else 0


def _device(name: str) -> torch.device:
    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"--device {name}: {exc}") from None


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _temperature(text: str) -> float:
    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(t) or t < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return t


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cnfkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, n_default in (("superres", 4), ("segment", 8)):
        q = sub.add_parser(name, help=f"apply a trained {name} model to images")
        q.add_argument("images", nargs="+", help="input image files (PNG, JPEG)")
        q.add_argument("--checkpoint", required=True, help="a folder written by make reproduce or the training command")
        q.add_argument("--samples", type=_positive_int, default=n_default)
        q.add_argument("-o", "--output", required=True, help="output folder")
        q.add_argument("--device", default="auto")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument(
            "--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS[name],
            help=f"refuse larger inputs before decoding them (default {DEFAULT_MAX_PIXELS[name]})",
        )  # fmt: skip
        q.add_argument("--debug", action="store_true", help="show tracebacks")
        if name == "superres":
            q.add_argument("--temperature", type=_temperature, default=0.8)
            q.add_argument("--tile", type=_positive_int, default=128, help="tile side in LR pixels (memory per tile)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    for f in a.images:
        if not Path(f).is_file():
            print(f"error: no such image file: {f}", file=sys.stderr)
            return 2
    try:
        return _apply(a)
    except UserError as exc:
        if a.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
