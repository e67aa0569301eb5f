"""One small progress abstraction for long work: library code reports, the CLI renders.

Pipelines and subsystems take `progress: Progress = QUIET` and call `stage` when a step starts,
`advance` as a counted step moves (timing runs, tensors converted), and `epoch` when a training
epoch ends. The CLI passes an object that draws a status line and a bar and prints finished
epochs; a Python caller passes nothing, or its own subclass.
"""

from __future__ import annotations

from collections.abc import Mapping


class Progress:
    """Receives progress reports; this base class ignores them (see QUIET)."""

    def stage(self, text: str) -> None:
        """A new step starts; `text` says what it does ("calibrating on 16 batches")."""

    def advance(self, done: int, total: int, what: str = "") -> None:
        """`done` of `total` units of the current step are finished; `what` names the last one."""

    def epoch(self, row: Mapping[str, float]) -> None:
        """A training epoch finished: epoch, loss, eval_accuracy (and step, when pruning iterates)."""


QUIET = Progress()
