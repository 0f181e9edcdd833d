"""The default task: scikit-learn's bundled 8x8 handwritten digits (1797 images, offline) read
row by row as 64 pixel tokens; pixel value 0..16 is the token id, the digit 0..9 the label."""

from __future__ import annotations

import numpy as np

from autohm.tasks.base import Task, make_split
from autohm.tasks.splits import stratified_split

LEVELS = 17  # pixel values 0..16
WEIGHTS = (14, 3, 3)  # 70 / 15 / 15 per cent


def digits(seed: int) -> Task:
    """The digits as 64-token sequences (vocab 17, no padding, 10 classes), split 70/15/15 per
    class with `seed`."""
    from sklearn.datasets import load_digits  # imported here: a second of start-up otherwise

    data = load_digits()
    ids = data.data.astype(np.int64)
    labels = data.target.astype(np.int64)
    splits = stratified_split(labels, WEIGHTS, seed)
    train, validation, test = (make_split(ids[index], labels[index]) for index in splits)
    return Task(
        name="digits",
        vocab_size=LEVELS,
        num_labels=len(data.target_names),
        seq_len=ids.shape[1],
        train=train,
        validation=validation,
        test=test,
        label_names=tuple(str(name) for name in data.target_names),
        seed=seed,
    )
