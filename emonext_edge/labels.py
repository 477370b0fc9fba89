"""Emotion label orders.

The official training code reads FER2013 with torchvision ``ImageFolder``, so the model's
logits follow alphabetical class-folder order. The Kaggle CSV release numbers the same
classes differently; the two are mapped by name, never by position.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Logit order of models trained with the official code (ImageFolder = sorted folder names).
IMAGEFOLDER_LABELS: tuple[str, ...] = (
    "Angry",
    "Disgust",
    "Fear",
    "Happy",
    "Neutral",
    "Sad",
    "Surprise",
)

#: Meaning of the ``emotion`` column of the Kaggle ``fer2013.csv``.
KAGGLE_CSV_LABELS: tuple[str, ...] = (
    "Angry",
    "Disgust",
    "Fear",
    "Happy",
    "Sad",
    "Surprise",
    "Neutral",
)

DEFAULT_LABELS = IMAGEFOLDER_LABELS


def canonical_label(name: str, labels: Sequence[str] = IMAGEFOLDER_LABELS) -> str:
    """Return the entry of ``labels`` equal to ``name`` ignoring case, or raise ``KeyError``."""
    folded = name.strip().casefold()
    for label in labels:
        if label.casefold() == folded:
            return label
    raise KeyError(f"unknown emotion label {name!r}; expected one of {list(labels)}")


def csv_code_to_index(code: int, labels: Sequence[str] = IMAGEFOLDER_LABELS) -> int:
    """Map a Kaggle CSV ``emotion`` code to the index of the same emotion in ``labels``."""
    if not 0 <= code < len(KAGGLE_CSV_LABELS):
        raise KeyError(f"Kaggle emotion code {code} out of range 0..{len(KAGGLE_CSV_LABELS) - 1}")
    return list(labels).index(canonical_label(KAGGLE_CSV_LABELS[code], labels))
