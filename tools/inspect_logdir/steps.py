"""The scalar and step checks: non-finite scalars, steps written twice, repeated or going back,
tags never advanced, and train and eval tags mixed in one run."""

import collections
import itertools
import math
import re

from tools.inspect_logdir.events import SCALARS_PLUGIN
from tools.inspect_logdir.findings import RunReport, names

# Words that mark a tag as train or as eval, found between `/`, `_`, `-` and `.`.
_TRAIN_WORDS = frozenset({"train", "training"})
_EVAL_WORDS = frozenset({"eval", "evaluation", "val", "valid", "validation", "test"})


def report_scalars(points_by_tag: dict[str, list[tuple[int, float]]], report: RunReport) -> None:
    """Lists the scalars by step range and point count, and flags the non-finite ones."""
    for tag, points in sorted(points_by_tag.items()):
        bad = [(step, value) for step, value in points if not math.isfinite(value)]
        if bad:
            step, value = bad[0]
            report.flag(
                "non-finite",
                f"scalar {tag} is {value} at step {step} ({len(bad)} of {len(points)} points)",
            )
    steps_by_tag = {tag: [step for step, _ in points] for tag, points in points_by_tag.items()}
    report.lines.extend(stepped_lines(SCALARS_PLUGIN, steps_by_tag))


def stepped_lines(kind: str, steps_by_tag: dict[str, list[int]]) -> list[str]:
    """One line per group of tags that share a step range and a point count: a few lines, not one
    per tag, as an app's tags mostly go together."""
    groups: dict[tuple[int, int, int], list[str]] = collections.defaultdict(list)
    for tag, steps in sorted(steps_by_tag.items()):
        groups[(min(steps), max(steps), len(steps))].append(tag)
    return [
        f"{kind} ({len(group)}): {names(group)}: "
        + (f"step {first}, " if first == last else f"steps {first}..{last}, ")
        + f"{count} point{'s' if count > 1 else ''}{' each' if len(group) > 1 else ''}"
        for (first, last, count), group in groups.items()
    ]


def check_steps(steps_by_tag: dict[str, list[int]], report: RunReport) -> None:
    """Flags the tags never advanced, written twice at one step, written again at an earlier
    step, or whose steps go backwards."""
    no_step, twice, duplicated, backwards = [], [], [], []
    for tag, steps in sorted(steps_by_tag.items()):
        if len(steps) > 1 and len(set(steps)) == 1:
            no_step.append(f"{tag} ({len(steps)} points, all at step {steps[0]})")
            continue
        # Back to back at one step: two values of one name, written together (one overwrites
        # the other in the dashboard). A step seen again later: a second writer or a restart.
        repeated = [later for earlier, later in itertools.pairwise(steps) if later == earlier]
        if repeated:
            twice.append(f"{tag} (step {repeated[0]})")
        distinct_runs = [step for step, _ in itertools.groupby(steps)]
        if len(set(distinct_runs)) < len(distinct_runs):
            duplicated.append(tag)
        if any(later < earlier for earlier, later in itertools.pairwise(steps)):
            backwards.append(tag)
    if no_step:
        report.flag("no-step", "written at one step only: " + names(no_step))
    if twice:
        report.flag("tag-written-twice", "written twice at one step: " + names(twice))
    if duplicated:
        report.flag("duplicate-steps", "steps written more than once: " + names(duplicated))
    if backwards:
        report.flag("steps-go-back", "steps go backwards: " + names(backwards))


def check_train_and_eval_mixed(scalar_tags: list[str], report: RunReport) -> None:
    """Flags train and eval scalars written to one run, where sibling runs overlay."""

    def words(tag: str) -> set[str]:
        return set(re.split(r"[/_.\-]", tag.lower()))

    train = sorted(tag for tag in scalar_tags if words(tag) & _TRAIN_WORDS)
    evaluation = sorted(tag for tag in scalar_tags if words(tag) & _EVAL_WORDS)
    if train and evaluation:
        report.flag(
            "mixed-train-eval",
            f"train tags ({names(train)}) and eval tags ({names(evaluation)}) in one run",
        )
