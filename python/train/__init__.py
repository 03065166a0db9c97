"""BaMCo training pipeline (installed as ``bamco_fast.train``): the application above the library.

``core/`` holds what both stages share (typed configs and ``--set``, the one entry and its run-folder
rules, the training loop, checkpoints, runtime, metrics, plots); ``pretrain/`` and ``vqa/`` each hold one
stage's config, data, task and preparation. The stages never import each other: the VQA stage reads the
files a pretraining run leaves. ``python -m bamco_fast.train pretrain|vqa``.
"""
