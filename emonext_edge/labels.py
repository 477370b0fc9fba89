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


#: Longest accepted label, in characters.
MAX_LABEL_LENGTH = 64


def validate_labels(labels: object, where: str, error: type = ValueError) -> tuple[str, ...]:
    """``labels`` as a tuple if it is a non-empty list of distinct, non-empty strings of at most
    :data:`MAX_LABEL_LENGTH` characters without control or format characters (escape sequences,
    bidi overrides: they would be printed raw to terminals); else ``error`` naming the first bad one.

    Distinct ignoring case, since labels are matched by name ignoring case (:func:`canonical_label`).
    """
    import unicodedata

    if not isinstance(labels, (list, tuple)) or not labels:
        raise error(f"{where}: 'labels' must be a non-empty list of strings, got {labels!r:.80}")
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise error(f"{where}: label {i} is {type(label).__name__} {label!r:.40}, expected a string")
        if not label.strip():
            raise error(f"{where}: label {i} ({label!r}) is empty")
        bad = next((c for c in label if unicodedata.category(c).startswith("C")), None)
        if bad is not None:
            raise error(f"{where}: label {i} ({label!r:.80}) contains the control character U+{ord(bad):04X}")
        if len(label) > MAX_LABEL_LENGTH:
            raise error(f"{where}: label {i} ({label[:20]!r}...) is {len(label)} characters, over {MAX_LABEL_LENGTH}")
        key = label.strip().casefold()
        if key in seen:
            raise error(f"{where}: label {i} ({label!r}) repeats label {seen[key]} ({labels[seen[key]]!r}); "
                        "labels must be distinct")
        seen[key] = i
    return tuple(labels)
