"""Label order: logits follow ImageFolder (alphabetical) order, CSV codes map by name."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from emonext_edge import preprocess
from emonext_edge.labels import IMAGEFOLDER_LABELS, KAGGLE_CSV_LABELS, canonical_label, csv_code_to_index


def test_imagefolder_order_is_sorted_folder_names():
    assert list(IMAGEFOLDER_LABELS) == sorted(IMAGEFOLDER_LABELS)
    assert IMAGEFOLDER_LABELS == ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")


def test_csv_codes_map_by_name():
    assert [IMAGEFOLDER_LABELS[csv_code_to_index(c)] for c in range(7)] == list(KAGGLE_CSV_LABELS)
    assert csv_code_to_index(6) == IMAGEFOLDER_LABELS.index("Neutral")
    assert csv_code_to_index(4) == IMAGEFOLDER_LABELS.index("Sad")
    assert canonical_label("surprise") == "Surprise"


def test_reference_model_labels_match_its_training_folders(reference_model, reference_info, fer2013_root):
    """Predictions on real val faces, named by the model's labels, reproduce the model card.

    The card's confusion matrix was measured with the official code; with a wrong label order
    (e.g. Kaggle's) or a different preprocessing, these rows would not match.
    """
    assert list(reference_model.labels) == reference_info["labels"] == list(IMAGEFOLDER_LABELS)
    confusion = np.array(reference_info["val_confusion_center"])

    def predicted_names(files):
        with torch.no_grad():
            logits = reference_model(torch.from_numpy(preprocess(files))).numpy()
        return Counter(reference_model.labels[i] for i in logits.argmax(1))

    # the whole Disgust class (56 faces): the card's row, exactly
    disgust = sorted((fer2013_root / "val" / "Disgust").glob("*.jpg"))
    row = confusion[IMAGEFOLDER_LABELS.index("Disgust")]
    assert len(disgust) == row.sum()
    counts = predicted_names(disgust)
    assert [counts.get(name, 0) for name in IMAGEFOLDER_LABELS] == row.tolist()
    # Happy, the model's best class, is recognised under its own name
    happy = predicted_names(sorted((fer2013_root / "val" / "Happy").glob("*.jpg"))[:100])
    assert happy.most_common(1)[0][0] == "Happy", happy
