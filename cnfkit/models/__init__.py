"""The papers' models, built from the library: DRIVE segmentation (:mod:`~cnfkit.models.segmentation`),
super-resolution (:mod:`~cnfkit.models.superres`) and the toy problems with Xiao et al.'s construction
(:mod:`~cnfkit.models.toy`)."""
