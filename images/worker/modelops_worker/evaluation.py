"""Validation metrics computed with torch/numpy in one pass over a confusion matrix.

They run after every epoch on every process, so they must be cheap: scikit-learn's versions spend
most of their time validating their inputs (about 10 ms per call), more than a small model's epoch
of validation. The definitions are scikit-learn's (macro average over the classes that occur in the
labels or the predictions, zero where undefined; ROC AUC with ties averaged), and a test holds them
to it.
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt
import torch
from scipy.stats import rankdata


def classification_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """loss, accuracy, macro precision/recall/F1, and auc when there are exactly two classes."""
    logits = logits.float()
    n = logits.shape[1]
    loss = float(torch.nn.functional.cross_entropy(logits, y))
    pred = logits.argmax(dim=1)
    cm = torch.bincount(y * n + pred, minlength=n * n).reshape(n, n).double()
    tp = cm.diag()
    predicted = cm.sum(dim=0)
    actual = cm.sum(dim=1)
    present = (predicted > 0) | (actual > 0)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    out = {
        "loss": loss,
        "accuracy": float((pred == y).double().mean()),
        "precision": float(precision[present].mean()),
        "recall": float(recall[present].mean()),
        "f1": float(f1[present].mean()),
    }
    if n == 2:
        auc = roc_auc(logits.softmax(dim=1)[:, 1].cpu().numpy(), y.cpu().numpy())
        if auc is not None:
            out["auc"] = auc
    return out


def roc_auc(scores: npt.NDArray[Any], labels: npt.NDArray[Any]) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (tied scores count half); None with a single class."""
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
