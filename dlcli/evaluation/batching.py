"""Grouping a stream of samples into batches for the evaluators, and the loop they share."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from dlcli.progress import NullReporter, Reporter


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def over_batches(model: Any, samples: Iterable[Any], batch_size: int, score: Callable[[list[Any]], None], *,
                 reporter: Reporter | None = None, total: int | None = None) -> None:
    """`score(batch)` for each batch of `samples` with the model in eval mode and a progress bar in
    images; the model gets its own mode back afterwards, also when scoring fails or is stopped
    (a trainer evaluates between epochs and goes on training)."""
    reporter = reporter or NullReporter()
    was_training = model.training
    model.eval()
    reporter.start("evaluating", total=total, unit="img")
    try:
        for batch in batched(samples, batch_size):
            score(batch)
            reporter.advance(len(batch))
    finally:
        reporter.finish()
        model.train(was_training)
