"""Datasets: where they live (data root / offline mirror), checksums, and shape helpers."""

from .store import (
    REGISTRY,
    DatasetError,
    DatasetSpec,
    FileSpec,
    data_root,
    dataset_dir,
    dataset_file,
    mirror_root,
    sha256sum,
    use_data_dirs,
)
from .transforms import crop_to, pad_to_multiple

__all__ = [
    "REGISTRY",
    "DatasetError",
    "DatasetSpec",
    "FileSpec",
    "crop_to",
    "data_root",
    "dataset_dir",
    "dataset_file",
    "mirror_root",
    "pad_to_multiple",
    "sha256sum",
    "use_data_dirs",
]

from .mnist import load_mnist, read_idx

__all__ += ["load_mnist", "read_idx"]

from .drive import DriveSplit, load_drive, random_affine

__all__ += ["DriveSplit", "load_drive", "random_affine"]

from .imresize import imresize
from .sr import chroma_detail_ratio, downscale_images, hr_lr_pair, load_sr_images, patch_pairs

__all__ += ["chroma_detail_ratio", "downscale_images", "hr_lr_pair", "imresize", "load_sr_images", "patch_pairs"]

from .imagenet import ImageNetArray, load_imagenet

__all__ += ["ImageNetArray", "load_imagenet"]
