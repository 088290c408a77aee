"""Scoring a digit classifier on the MNIST test set: probabilities, accuracy, the confusion matrix,
the most-confused pairs and the book's figure of misclassified digits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dlcli.data.mnist import load_mnist, to_float

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime



def predict_probs(model: torch.nn.Module, images: torch.Tensor, runtime: Runtime, *, batch: int = 1000,
                  channels_last: bool = True) -> torch.Tensor:
    """Softmax probabilities (float32, CPU) of `model` for uint8 images N x 28 x 28."""
    was_training = model.training
    model.eval()
    out = []
    with runtime.inference():
        for i in range(0, images.shape[0], batch):
            x = runtime.to(to_float(images[i : i + batch]), channels_last=channels_last)
            out.append(torch.softmax(model(x).float(), dim=1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 10)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, n: int = 10) -> list[list[int]]:
    """rows: true digit, columns: predicted digit."""
    cm = torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)
    return cm.tolist()


def confused_pairs(cm: list[list[int]], top: int = 5) -> list[dict[str, Any]]:
    """The digit pairs mistaken for each other most often, both directions counted together
    (the book names 1/7, 0/6 and 3/5)."""
    n = len(cm)
    pairs = []
    for a in range(n):
        for b in range(a + 1, n):
            count = cm[a][b] + cm[b][a]
            if count:
                pairs.append({"pair": f"{a}/{b}", "count": count, f"{a}->{b}": cm[a][b], f"{b}->{a}": cm[b][a]})
    pairs.sort(key=lambda p: (-p["count"], p["pair"]))
    return pairs[:top]


def misclassified_grid(images: torch.Tensor, labels: torch.Tensor, pred: torch.Tensor, *, ncols: int = 20,
                       limit: int = 200, scale: int = 2) -> Any:
    """The book's figure 8-2: wrongly classified digits, true label top left (green),
    prediction bottom right (red). Returns a PIL image, or None when nothing is wrong."""
    from PIL import Image

    from dlcli.media import make_grid

    wrong = (pred != labels).nonzero().flatten()[:limit]
    if wrong.numel() == 0:
        return None
    tiles = [Image.fromarray((255 - images[i]).numpy(), mode="L") for i in wrong.tolist()]  # dark ink on white
    corners = [(str(int(labels[i])), str(int(pred[i]))) for i in wrong.tolist()]
    return make_grid(tiles, min(ncols, len(tiles)), scale=scale, corner_labels=corners)


def evaluate(model: torch.nn.Module, data_dir: Path, runtime: Runtime, *, channels_last: bool = True) -> dict[str, Any]:
    """Test-set accuracy, errors, confusion matrix and most-confused pairs of a model."""
    test_x, test_y = load_mnist(data_dir, "test")
    model = runtime.place(model, channels_last=channels_last)
    t0 = time.perf_counter()
    probs = predict_probs(model, test_x, runtime, channels_last=channels_last)
    seconds = time.perf_counter() - t0
    pred = probs.argmax(1)
    errors = int((pred != test_y).sum())
    cm = confusion_matrix(pred, test_y)
    return {"accuracy": 1.0 - errors / test_y.numel(), "errors": errors, "n": int(test_y.numel()),
            "confusion": cm, "confused_pairs": confused_pairs(cm), "seconds": seconds,
            "images_per_s": test_y.numel() / max(seconds, 1e-9), "pred": pred}
