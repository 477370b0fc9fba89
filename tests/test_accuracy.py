"""benchmarks/accuracy.py: JSON schema, label mapping by name, ten-crop vs an independent computation,
and the reference model card's figures on FER2013 val."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emonext_edge.labels import IMAGEFOLDER_LABELS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "accuracy.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("benchmarks_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


accuracy = _load_script()


def test_label_permutation_by_name_and_metrics():
    model_labels = ["happy", "Angry", "Disgust", "Fear", "Neutral", "Sad", "Surprise"]
    perm = accuracy.label_permutation(model_labels, IMAGEFOLDER_LABELS, "m.onnx")
    logits = np.eye(7, dtype=np.float32)  # row i: the model votes for its own class i
    mapped = logits[:, perm]
    assert [IMAGEFOLDER_LABELS[k] for k in mapped.argmax(1)] == [
        "Happy", "Angry", "Disgust", "Fear", "Neutral", "Sad", "Surprise"]
    with pytest.raises(accuracy.EvaluationError, match="Bored"):
        accuracy.label_permutation([*IMAGEFOLDER_LABELS[:6], "Bored"], IMAGEFOLDER_LABELS, "m.onnx")
    with pytest.raises(accuracy.EvaluationError, match="6 classes"):
        accuracy.label_permutation(IMAGEFOLDER_LABELS[:6], IMAGEFOLDER_LABELS, "m.onnx")

    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 2, 0])
    m = accuracy.classification_metrics(y, p, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": pytest.approx(2 / 3), "d": None}
    # F1 per class: a 2*1/(2+2)=0.5, b 2*1/(1+2)=2/3, c 2*2/(3+2)=0.8; d absent everywhere -> not averaged
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert m["confusion_matrix"][2] == [1, 0, 2, 0]


def test_json_schema_small_run(tmp_path, reference_checkpoint, official_checkpoint, fer2013_root, capsys):
    out, md = tmp_path / "acc.json", tmp_path / "acc.md"
    rc = accuracy.main([str(reference_checkpoint), str(official_checkpoint), "--data", str(fer2013_root),
                        "--limit", "12", "--batch-size", "5", "--json", str(out), "--markdown", str(md), "--quiet"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report) == {"data", "reference", "results"}
    data = report["data"]
    assert data["split"] == "val" and data["protocol"] == "center" and data["images"] == 12
    assert data["labels"] == list(IMAGEFOLDER_LABELS) and sum(data["class_counts"].values()) == 12
    assert report["reference"] == str(reference_checkpoint)
    types = {"model": str, "backend": str, "precision": str, "accuracy": float, "macro_f1": float,
             "per_class_recall": dict, "agreement_with_reference": float, "max_abs_prob_diff": float,
             "images": int}
    assert [r["model"] for r in report["results"]] == [str(reference_checkpoint), str(official_checkpoint)]
    for r in report["results"]:
        for key, kind in types.items():
            assert isinstance(r[key], kind), (key, r[key])
        assert list(r["per_class_recall"]) == list(IMAGEFOLDER_LABELS)
        assert r["backend"] == "torch" and r["images"] == 12
        assert np.array(r["confusion_matrix"]).sum() == 12
        assert np.trace(np.array(r["confusion_matrix"])) / 12 == pytest.approx(r["accuracy"])
    ref, other = report["results"]
    assert ref["agreement_with_reference"] == 1.0 and ref["max_abs_prob_diff"] == 0.0
    assert other["max_abs_prob_diff"] > 0.0  # a different (untrained fixture) model
    table = capsys.readouterr().out
    assert "| model | backend |" in table and md.read_text().strip() == table.strip()


def test_ten_crop_matches_independent_pil_computation(reference_checkpoint, reference_model, fer2013_root, tmp_path):
    """Ten-crop through the script vs. torchvision's protocol redone here with PIL + the torch model."""
    torch = pytest.importorskip("torch")
    Image = pytest.importorskip("PIL.Image")
    from calibration.datasets import load_labeled

    limit = 6
    report = accuracy.evaluate([str(reference_checkpoint)], str(fer2013_root), "val", ten_crop=True,
                               limit=limit, batch_size=3, progress=False)
    paths, labels = load_labeled(fer2013_root, "val", limit=limit)
    preds = []
    for path in paths:
        img = Image.open(path).convert("L")
        w, h = img.size
        s = 236
        img = img.resize((s, int(s * h / w)) if w <= h else (int(s * w / h), s), Image.BILINEAR)
        crops = []
        for im in (img, img.transpose(Image.FLIP_LEFT_RIGHT)):
            W, H = im.size
            c = 224
            boxes = [(0, 0), (W - c, 0), (0, H - c), (W - c, H - c),
                     (round((W - c) / 2.0), round((H - c) / 2.0))]
            crops += [np.asarray(im.crop((x, y, x + c, y + c)), dtype=np.float32) / 255.0 for x, y in boxes]
        x = torch.from_numpy(np.stack(crops)[:, None].repeat(3, axis=1))
        with torch.no_grad():
            preds.append(int(reference_model(x).mean(0).argmax()))
    expected = np.zeros((7, 7), dtype=int)
    for y, p in zip(labels, preds):
        expected[y, p] += 1
    result = report["results"][0]
    assert report["data"]["protocol"] == "ten-crop"
    assert result["confusion_matrix"] == expected.tolist()
    assert result["accuracy"] == pytest.approx(float(np.mean(np.array(preds) == labels)))


@pytest.mark.parametrize("ten_crop", [False, True])
def test_prefetched_chunks_equal_inline_preprocessing(fer2013_root, ten_crop):
    """The background-thread path hands the models exactly the tensors of the one preprocessing."""
    from calibration.datasets import load_labeled_source
    from emonext_edge.preprocess import preprocess_one, preprocess_ten_crop

    source = load_labeled_source(str(fer2013_root), "val", 9)
    one = preprocess_ten_crop if ten_crop else preprocess_one
    chunks = [range(4), range(4, 8), range(8, 9)]
    outputs = []
    for workers in (1, None):
        with accuracy._Prefetcher(workers) as pool:
            futures = [pool.submit(accuracy._prepare, source, one, c) for c in chunks]
            outputs.append([f.result() for f in futures])
    expected = np.stack([one(source.items[i], name=source.names[i]) for i in range(9)]).reshape(-1, 3, 224, 224)
    for out in outputs:
        assert [k for _, kept, _ in out for k in kept] == list(range(9))
        batch = np.concatenate([b for b, _, _ in out])
        assert batch.dtype == np.float32 and np.array_equal(batch, expected)


def test_bad_input_exit_code(tmp_path, reference_checkpoint):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(reference_checkpoint), "--data", str(tmp_path / "nope")],
                          check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error:") and "nope" in proc.stderr


@pytest.mark.slow
def test_reference_card_center_crop_on_full_val(reference_checkpoint, reference_info, fer2013_root):
    """The check that label order and preprocessing are the training code's: the card's val/center figure."""
    # default batch size: PyTorch on a 2-core CPU runs 4x slower per image at batch 64 than at 16
    report = accuracy.evaluate([str(reference_checkpoint)], str(fer2013_root), "val", progress=False)
    result = report["results"][0]
    assert report["data"]["images"] == sum(map(sum, reference_info["val_confusion_center"]))
    # the card rounds to 0.01 pp; one image is 0.028 pp: this is the card's figure to the image
    assert 100 * result["accuracy"] == pytest.approx(reference_info["accuracy_percent"]["val/center"], abs=0.005)
    assert result["per_class_recall"] == {  # cheap to check, and catches a permuted label order at once
        name: pytest.approx(row[i] / sum(row), abs=0.02)
        for i, (name, row) in enumerate(zip(reference_info["labels"], reference_info["val_confusion_center"]))
    }


def test_csv_and_imagefolder_give_the_same_confusion(tmp_path, reference_checkpoint, fer2013_root):
    """The same real faces as a Kaggle CSV (codes in Kaggle order) and as a folder tree: same results."""
    import cv2
    from conftest import fer_val_sample

    kaggle_codes = {"Angry": 0, "Disgust": 1, "Fear": 2, "Happy": 3, "Sad": 4, "Surprise": 5, "Neutral": 6}
    lines = ["emotion,pixels,Usage"]
    for path, y in fer_val_sample(fer2013_root, 2):
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        lines.append(f"{kaggle_codes[IMAGEFOLDER_LABELS[y]]},{' '.join(map(str, gray.ravel()))},PublicTest")
    csv_path = tmp_path / "fer2013.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    tree = tmp_path / "tree"
    for path, y in fer_val_sample(fer2013_root, 2):
        (tree / "val" / IMAGEFOLDER_LABELS[y].lower()).mkdir(parents=True, exist_ok=True)
        (tree / "val" / IMAGEFOLDER_LABELS[y].lower() / path.name).write_bytes(path.read_bytes())
    from_csv = accuracy.evaluate([str(reference_checkpoint)], str(csv_path), progress=False)
    from_tree = accuracy.evaluate([str(reference_checkpoint)], str(tree), progress=False)
    assert from_csv["data"]["kind"] == "csv" and from_csv["data"]["images"] == 14
    assert from_csv["data"]["class_counts"] == {name: 2 for name in IMAGEFOLDER_LABELS}
    assert from_csv["results"][0]["confusion_matrix"] == from_tree["results"][0]["confusion_matrix"]
