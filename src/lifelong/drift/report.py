"""What a drift check returns: one verdict per feature, the error evidence, and the decision."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from lifelong.errors import LifelongError

Decision = Literal["none", "drift", "severe"]


class DriftError(LifelongError):
    """The frames handed to the drift check cannot be compared (missing or empty feature)."""


@dataclass(frozen=True)
class FeatureDrift:
    """The verdict on one feature.

    ``test`` says what ``statistic`` is: the KS distance *D* (``"ks"``), the PSI (``"psi"``),
    or (``"day"``) the distance of the day's profile from similar reference days, judged
    against the same distance of every reference day from the others (``calibration``).
    ``threshold`` is what ``p_value`` (or the PSI) was compared with; ``psi`` is always the
    row-level PSI (the severity measure of the row tests, for information in the day test).
    """

    feature: str
    test: Literal["ks", "psi", "day"]
    statistic: float
    p_value: float | None
    drifted: bool
    severe: bool
    psi: float = 0.0
    threshold: float = 0.0
    n_reference: int = 0
    n_current: int = 0
    # Kish design effect of the current batch (1.0: rows treated as independent)
    design_effect: float = 1.0
    # "day" test: the calibrated score (t), the distance over the reference days' median, and
    # how the reference was used (similar days, number of days, log-distance mean and sd)
    z: float | None = None
    ratio: float | None = None
    calibration: dict | None = None


@dataclass(frozen=True)
class DriftReport:
    """The day's drift decision with its evidence; ``to_json`` is what goes to XCom."""

    decision: Decision
    features: list[FeatureDrift] = field(default_factory=list)
    # champion error on the new day against its recent history (see ``performance.error_drift``)
    error: dict | None = None
    reasons: list[str] = field(default_factory=list)
    # how the thresholds were set: method, reference days, levels; status "ok" or why not tested
    calibration: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "decision": self.decision,
            "features": [asdict(f) for f in self.features],
            "error": dict(self.error) if self.error is not None else None,
            "reasons": list(self.reasons),
            "calibration": dict(self.calibration),
        }
