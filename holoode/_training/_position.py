"""Where a run is: the data position, the step count and the skip counters."""

import dataclasses

from .._solution import RESULT_NAMES


@dataclasses.dataclass
class Position:
    """The state of a run outside its arrays, saved in every checkpoint.

    **Fields:** `epoch` and `batch` (the next batch to run), `step` (steps taken,
    skipped ones included), `skips` (skipped steps by `holoode.RESULTS` name),
    `consecutive` (skipped steps in a row), `loss_sum` and `loss_count` (over the
    current epoch's successful steps), `reduced_beta` (steps retried with |β|
    halved), `seconds` (wall time of the training loop, across resumptions).
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    skips: dict[str, int] = dataclasses.field(default_factory=dict)
    consecutive: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    reduced_beta: int = 0
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, fields: dict) -> "Position":
        """From a checkpoint's header (fields it lacks keep their defaults)."""
        return cls(**{f.name: fields[f.name] for f in _FIELDS if f.name in fields})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def skipped(self) -> int:
        return sum(self.skips.values())

    @property
    def train_loss(self) -> float | None:
        """Mean loss over the current epoch's successful steps (`None`: none yet)."""
        return self.loss_sum / self.loss_count if self.loss_count else None

    def tally(self, loss: float, code: int, halvings: int) -> None:
        """Count one step: its loss, or its skip reason (a `RESULTS` position);
        `halvings` > 0 if it was retried with |β| halved."""
        self.reduced_beta += halvings > 0
        self.step += 1
        self.batch += 1
        if code == 0:
            self.loss_sum += loss
            self.loss_count += 1
            self.consecutive = 0
        else:
            reason = RESULT_NAMES[code]
            self.skips[reason] = self.skips.get(reason, 0) + 1
            self.consecutive += 1

    def next_epoch(self, epoch: int) -> None:
        """Start `epoch` at its first batch, with fresh loss sums."""
        self.epoch, self.batch, self.loss_sum, self.loss_count = epoch, 0, 0.0, 0


_FIELDS = dataclasses.fields(Position)
