"""Maintainer tool: build cnfkit/data/registry.json from the MANIFEST.txt files of a data mirror.

    python data/make_registry.py ../shared/data

Each MANIFEST lists ``sha256  bytes  info  path`` for every file of a dataset.  The registry keeps,
per dataset, those checksums, the official per-file download URLs where such URLs exist, and the
instructions printed when a dataset is missing.  It holds no data.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

LINE = re.compile(r"^([0-9a-f]{64})\s+(\d+)\s+.*?\s(\S+)\s*$")

MNIST_URLS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
FASHION_URLS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]

INFO = {
    "MNIST": dict(
        urls=MNIST_URLS,
        how="Downloaded automatically (python -m cnfkit.data fetch MNIST) from the official MNIST files.",
        terms="CC BY-SA 3.0 (Y. LeCun, C. Cortes). Cite LeCun et al., Proc. IEEE 1998.",
    ),
    "FashionMNIST": dict(
        urls=FASHION_URLS,
        how="Downloaded automatically (python -m cnfkit.data fetch FashionMNIST) from Zalando's official files.",
        terms="MIT licence (Zalando Research). Cite Xiao, Rasul & Vollgraf 2017.",
    ),
    "DRIVE": dict(
        urls=[],
        how=(
            "DRIVE cannot be downloaded automatically: its terms allow use only by those who obtained it from the "
            "official site. Register at https://drive.grand-challenge.org/, download DRIVE.zip and unzip it so that "
            "<DATA>/DRIVE/training/images/21_training.tif and <DATA>/DRIVE/test/2nd_manual/01_manual2.gif exist."
        ),
        terms="Research and education only; copying and redistribution prohibited. Cite Staal et al., IEEE TMI 2004.",
    ),
    "Set5": dict(
        urls=[],
        how="Place the 5 HR PNGs (baby, bird, butterfly, head, woman) of Bevilacqua et al. (BMVC 2012) in <DATA>/Set5/HR/.",
        terms="Research use; cite Bevilacqua et al., BMVC 2012.",
    ),
    "Set14": dict(
        urls=[],
        how="Place the 14 HR PNGs of Zeyde et al. (2010) in <DATA>/Set14/HR/ (e.g. from Huang et al.'s SelfExSR release).",
        terms="Research use; cite Zeyde et al., Curves and Surfaces 2010.",
    ),
    "BSD100": dict(
        urls=[],
        how=(
            "BSD100 is the BSDS300 test split: get BSDS300-images.tgz from the Berkeley segmentation site, put the 100 "
            "test JPEGs in <DATA>/BSD100/original_jpg/ and their lossless PNG decodes in <DATA>/BSD100/HR/."
        ),
        terms="Non-commercial research and education. Cite Martin et al., ICCV 2001.",
    ),
    "BSDS500_train_test": dict(
        urls=[],
        how=(
            "Get BSR_bsds500.tgz from the Berkeley segmentation site and copy BSR/BSDS500/data/images/{train,test}/*.jpg "
            "to <DATA>/BSDS500_train_test/{train,test}/. (Used as a stand-in for ImageNet32/64 SR training.)"
        ),
        terms="Non-commercial research and education. Cite Arbelaez et al., TPAMI 2011.",
    ),
}


def main(mirror: str) -> None:
    root = Path(mirror)
    registry = {}
    for name, info in INFO.items():
        manifest = root / name / "MANIFEST.txt"
        files = {}
        for line in manifest.read_text().splitlines():
            m = LINE.match(line)
            if m:
                files[m.group(3)] = {"sha256": m.group(1), "size": int(m.group(2))}
        if not files:
            raise SystemExit(f"no file lines found in {manifest}")
        registry[name] = {"files": dict(sorted(files.items())), **info}
    out = Path(__file__).resolve().parent.parent / "cnfkit" / "data" / "registry.json"
    out.write_text(json.dumps(registry, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}: " + ", ".join(f"{k} ({len(v['files'])} files)" for k, v in registry.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
