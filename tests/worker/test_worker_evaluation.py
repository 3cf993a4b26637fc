"""The worker's fast validation metrics agree with scikit-learn's definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

from modelops_worker.evaluation import classification_metrics


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_metrics_match_scikit_learn(classes):
    rng = np.random.default_rng(classes)
    y = torch.from_numpy(rng.integers(0, classes, size=300))
    # Round the logits so that tied scores occur (they must count half in the AUC).
    logits = torch.from_numpy(np.round(rng.normal(size=(300, classes)), 1)).float()
    logits[torch.arange(300), y] += 0.8  # better than chance, still with mistakes
    if classes == 10:
        logits[:, 9] = -100.0  # a class never predicted: zero precision, as scikit-learn counts it
    got = classification_metrics(logits, y)
    pred = logits.argmax(1).numpy()
    p, r, f1, _ = precision_recall_fscore_support(y.numpy(), pred, average="macro", zero_division=0)
    assert got["accuracy"] == pytest.approx(accuracy_score(y.numpy(), pred))
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f1))
    assert got["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))
    if classes == 2:
        assert got["auc"] == pytest.approx(roc_auc_score(y.numpy(), logits.softmax(1)[:, 1].numpy()))
    else:
        assert "auc" not in got
