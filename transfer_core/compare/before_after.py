"""Before and after fixing the data: the same run again on a newer data set version, and what changed.

"Train again on the cleaned data" repeats a run with the same configuration and seed on the data
set's newest version (:func:`train_again_config`); Compare then reads the two runs as a before and
after (:func:`before_after_reading`): they differ only in the data, so the difference in their
scores is the data's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from transfer_core.compare.labels import as_number, report_of
from transfer_core.config import RunConfig
from transfer_core.data.manifest import DataError, load_dataset
from transfer_core.data.versions import VersionError, version_diff
from transfer_core.runs import RunInfo

AGAIN_PREFIX = "again on data v"


def train_again_config(config: RunConfig) -> RunConfig:
    """``config`` on its data set's newest version: same model, freezing, training settings and seed.

    Args:
        config: The configuration of the run to repeat.

    Returns:
        The new run's configuration, named ``"again on data v<n>: <old name>"``.

    Raises:
        VersionError: When the run already used the newest version (nothing was fixed since).
        DataError: When the data set is gone or unreadable.
    """
    newest = load_dataset(config.dataset.root)
    if newest.version == config.dataset.version:
        raise VersionError(f"This run already used the data set's newest version (v{newest.version}): fix an image "
                           "first (relabel, remove or add one), then train again.")
    old_name = config.name.split(": ", 1)[1] if config.name.startswith(AGAIN_PREFIX) else config.name
    name = f"{AGAIN_PREFIX}{newest.version}" + (f": {old_name}" if old_name else "")
    return dataclasses.replace(config, dataset=newest, name=name[:200])


def newer_version(config: RunConfig | None) -> int | None:
    """The data set's newest version when it is newer than the one ``config`` used, else None."""
    if config is None:
        return None
    try:
        newest = load_dataset(config.dataset.root).version
    except DataError:
        return None
    return newest if newest != config.dataset.version else None


def differ_only_in_data(configs: Sequence[RunConfig]) -> bool:
    """Whether the runs share everything but the data set version (and their names)."""
    if len(configs) < 2:
        return False

    def key(config: RunConfig) -> RunConfig:
        dataset = dataclasses.replace(config.dataset, version=1, seed=0, val_fraction=0.2, test_fraction=0.0)
        return dataclasses.replace(config, dataset=dataset, name="")

    versions = {config.dataset.version for config in configs}
    first = key(configs[0])
    return len(versions) > 1 and all(key(config) == first for config in configs[1:])


def before_after_reading(runs: Sequence[RunInfo]) -> list[str]:
    """Sentences on a before/after comparison: what changed in the data, and what it did to the score.

    Args:
        runs: The runs being compared.

    Returns:
        Empty unless the runs differ only in the data set version; else one sentence per pair of
        consecutive versions (oldest first).
    """
    configs = [info.config for info in runs if info.config is not None]
    if len(configs) != len(runs) or not differ_only_in_data(configs):
        return []
    ordered = sorted(runs, key=lambda info: (info.config.dataset.version, info.created))
    sentences = []
    for before, after in zip(ordered, ordered[1:], strict=False):
        old, new = before.config.dataset, after.config.dataset
        if old.version == new.version:
            continue
        try:
            diff = version_diff(old, new)
        except DataError as error:
            sentences.append(f"Data v{old.version} and v{new.version} cannot be compared: {error}")
            continue
        accuracy = [as_number(report_of(info).val_accuracy) for info in (before, after)]
        score = ""
        if None not in accuracy:
            change = accuracy[1] - accuracy[0]
            direction = "rose" if change > 0.0005 else ("fell" if change < -0.0005 else "stayed")
            score = (f" Validation accuracy {direction} from {accuracy[0]:.1%} to {accuracy[1]:.1%}"
                     if direction != "stayed" else f" Validation accuracy stayed at {accuracy[1]:.1%}")
            score += " with the same model, settings and seed: the difference is the data's."
        caveat = ""
        if diff.val_changed:
            which = "is a validation image" if diff.val_changed == 1 else "are validation images"
            caveat = (f" {diff.val_changed} of the changed images {which}, so the two scores are measured on "
                      "slightly different images or labels: a fixed label can move the score by itself.")
        sentences.append(f"Before and after fixing the data: v{old.version} → v{new.version} ({diff.text()}).{score}"
                         f"{caveat}")
    return sentences


def before_run(info: RunInfo, runs: Sequence[RunInfo]) -> RunInfo | None:
    """The run ``info`` repeats on newer data: same everything, an older version of the same data set.

    Args:
        info: The "after" run.
        runs: Runs of the store.

    Returns:
        Of the runs that differ from ``info`` only in an older data version, the one on the newest
        of those versions (the latest made, on a tie); None when there is none.
    """
    if info.config is None:
        return None
    candidates = [other for other in runs
                  if other.run_id != info.run_id and other.config is not None
                  and other.config.dataset.version < info.config.dataset.version
                  and differ_only_in_data([other.config, info.config])]
    return max(candidates, key=lambda other: (other.config.dataset.version, other.created), default=None)
