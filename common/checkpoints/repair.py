"""What a run may repair in its logdir, decided at its restore and done before its first write,
and the refusal of a logdir whose contents do not add up (LogdirStateError).

A run rewrites only what it can prove its own: the logdir's record (common/logdir/run_record.py)
keeps which app and model wrote there, which event files (with a proof of each: a name is no proof)
and checkpoints this code's runs wrote. The trim touches only those files; a logdir whose state does
not add up (another app's or model's run, event files of another program and no checkpoint,
checkpoints its runs saved that are now gone, ...) is refused in one line before anything is
written. Repaired before the first write: a trim's leftovers, the record's own, a killed save's
files, and a broken list of checkpoints (rewritten to end at the one restored).
"""

import dataclasses

import tensorflow as tf

from common import errors
from common.checkpoints import checkpoints
from common.checkpoints.checkpoints import (
    CHECKPOINT_DIRECTORY,
    CHECKPOINT_NAME,
    STATE_FILE_NAME,
    CheckpointMismatchError,
    _CheckpointsFound,
)
from common.logdir import event_files, prepare, run_record, trim
from common.logdir.prepare import LogdirStateError


@dataclasses.dataclass
class RepairPlan:
    """What the chief's first write repairs, as its restore decided it (see `plan_repairs`)."""

    # The list of checkpoints to write (steps, oldest first), ending at the restored one.
    state_to_write: list[int] | None = None
    # A broken list of checkpoints with nothing to list: removed (the manager needs none).
    remove_state: bool = False
    # A killed save's files.
    files_to_remove: list[str] = dataclasses.field(default_factory=list)
    # The event files the record proves this logdir's, by name relative to it: the trim's.
    own_event_files: dict[str, str] = dataclasses.field(default_factory=dict)
    # A resume's refusal, put off to its first write (so a finished run stays "nothing to do").
    refusal: LogdirStateError | None = None


def check_checkpoint_directory(logdir: str) -> None:
    """Refuses a `checkpoints` in `logdir` that is a file, or that cannot be written: before any
    training, not at the first save."""
    directory = f"{logdir}/{CHECKPOINT_DIRECTORY}"
    try:
        if not tf.io.gfile.exists(directory):
            return
        if not tf.io.gfile.isdir(directory):
            raise LogdirStateError(
                f"logdir {logdir}: {CHECKPOINT_DIRECTORY} is a file, not the directory of "
                f"checkpoints; move {directory} away, or pass a new --logdir"
            )
        prepare.probe_writable(directory)
    except (tf.errors.OpError, OSError) as error:
        raise errors.UnwritablePathError(
            f"logdir {logdir}: {directory} cannot be written "
            f"({errors.first_line(error)}), so no checkpoint could be saved; make it "
            "writable, or pass a new --logdir"
        ) from error


def checkpoint_candidates(
    logdir: str,
    found: _CheckpointsFound,
    record: run_record.RunRecord | None,
    is_chief: bool,
) -> list[int]:
    """The steps of the checkpoints to try, newest first, from the list of checkpoints or,
    when it is broken or missing, from the files the logdir's record proves its runs' own.

    Raises:
        LogdirStateError: if checkpoint files (or a broken list of them) are there that no
            record says this app's runs saved.
    """
    if found.state_problem is None:
        return found.listed
    steps = found.complete_steps
    if not is_chief:
        return steps  # The chief has judged the same files by the same rules.
    unfinished_first_save = (
        not found.state_exists  # The list is written once the first save is complete.
        and record is not None
        and record.last_saved is None
        and record.saving is not None
        and set(found.files) == {record.saving}
    )
    if unfinished_first_save:
        return []  # Its files are removed before the first write: see plan_repairs.
    if found.state_exists and not found.files and record is None:
        # Nothing to resume, but the manager cannot start with that file there, and without a
        # record it cannot be proven this app's to remove.
        raise LogdirStateError(
            f"logdir {logdir}: {found.directory}/{STATE_FILE_NAME}, the list of "
            f"checkpoints, {found.state_problem}, and no checkpoint is there; move it away, or "
            "pass a new --logdir"
        )
    if found.files and (record is None or record.last_saved is None):
        names = sorted(name.rsplit("/", 1)[-1] for paths in found.files.values() for name in paths)
        raise LogdirStateError(
            f"logdir {logdir}: {found.directory} holds checkpoint files "
            f"({checkpoints.short_list(names)}), but its list of checkpoints ({STATE_FILE_NAME}) "
            f"{found.state_problem} and no record says this app's runs saved them; move "
            f"{found.directory} away, or pass a new --logdir"
        )
    return steps


def restore_problems(
    logdir: str,
    found: _CheckpointsFound,
    candidates: list[int],
    skipped: list[tuple[int, str]],
    restored_step: int | None,
) -> list[str]:
    """What was wrong with `checkpoints/` at the restore, one phrase each: a broken list of
    checkpoints, each newer checkpoint skipped as unreadable (`skipped`: step, why).

    Raises:
        LogdirStateError: if there were `candidates`, and none restored (`restored_step`).
    """
    # A missing list is only worth a word when there were checkpoints to list.
    problems = (
        [
            f"{CHECKPOINT_DIRECTORY}/{STATE_FILE_NAME}, the list of checkpoints, "
            f"{found.state_problem}"
        ]
        if found.state_problem and (found.state_exists or candidates)
        else []
    )
    problems += [f"{CHECKPOINT_NAME}-{step} cannot be read ({why})" for step, why in skipped]
    if candidates and restored_step is None:
        raise LogdirStateError(
            f"logdir {logdir}: no checkpoint in {found.directory} can be read: "
            f"{'; '.join(problems)}; pass a new --logdir"
        )
    return problems


def plan_after_restore(
    logdir: str,
    found: _CheckpointsFound,
    record: run_record.RunRecord | None,
    model: dict[str, object] | None,
    candidates: list[int],
    restored_step: int | None,
    newer_skipped: bool,
) -> RepairPlan:
    """The chief's judgement once a checkpoint is restored (`restored_step`; None: none was):
    refuses another model's logdir, plans the repairs, and keeps the event files it may trim.

    Raises:
        CheckpointMismatchError: see `check_model`.
        LogdirStateError: see `plan_repairs` and `own_event_files`; for a resume, a refusal of
            `own_event_files` is kept in the plan's `refusal` instead, for the first write.
    """
    check_model(logdir, record, model)
    plan = plan_repairs(logdir, found, record, candidates, restored_step, newer_skipped)
    try:
        plan.own_event_files = own_event_files(logdir, record, restored_step)
    except LogdirStateError as refusal:
        if restored_step is None:
            raise  # A new run would write at once: refused before anything slow.
        # A resume is refused at its first write, so a finished run stays "nothing to do".
        plan.refusal = refusal
    return plan


def check_model(
    logdir: str, record: run_record.RunRecord | None, model: dict[str, object] | None
) -> None:
    """Refuses a logdir whose record says another model wrote it (checked after the
    checkpoint, whose own mismatch names the variable; this one also holds without one).

    Raises:
        CheckpointMismatchError: naming both models.
    """
    if record is None or record.model is None or model is None:
        return
    if record.model["fingerprint"] == model["fingerprint"]:
        return
    theirs, ours = (run_record.describe_model(m) for m in (record.model, model))
    if theirs == ours:
        theirs += f", fingerprint {record.model['fingerprint']}"
        ours += f", fingerprint {model['fingerprint']}"
    raise CheckpointMismatchError(
        f"logdir {logdir} holds a run of another model ({theirs}), which does not fit "
        f"this model ({ours}): its points would be erased; pass a new --logdir"
    )


def plan_repairs(
    logdir: str,
    found: _CheckpointsFound,
    record: run_record.RunRecord | None,
    candidates: list[int],
    restored_step: int | None,
    newer_skipped: bool,
) -> RepairPlan:
    """Decides (without doing it yet) what the first write repairs in `checkpoints/`, and
    refuses a logdir whose runs saved checkpoints that are gone.

    Raises:
        LogdirStateError: if the record says checkpoints were saved, and none restored.
    """
    if restored_step is None and record is not None and record.last_saved is not None:
        raise LogdirStateError(
            f"logdir {logdir}: its runs saved checkpoints (the last at step "
            f"{record.last_saved}), but {found.directory} holds none now; starting over "
            "would overwrite their work: put the checkpoints back, or pass a new --logdir"
        )
    plan = RepairPlan()
    if restored_step is not None and (found.state_problem or newer_skipped):
        # The list is rewritten to end at the restored checkpoint: the unreadable ones after
        # it count as never written (their files stay, unlisted, until a save replaces them).
        plan.state_to_write = sorted(step for step in candidates if step <= restored_step)
    elif restored_step is None and found.state_problem and found.state_exists and record:
        plan.remove_state = True  # A broken list with nothing to list: the manager needs none.
    # A save killed midway (the record says it had begun): its files are leftovers, unless it
    # got as far as being listed.
    if record is not None and record.saving is not None:
        kept = set(plan.state_to_write or found.listed) if restored_step is not None else set()
        if record.saving not in kept:
            plan.files_to_remove += found.files.get(record.saving, [])
    return plan


def own_event_files(
    logdir: str, record: run_record.RunRecord | None, restored_step: int | None
) -> dict[str, str]:
    """The event files the record proves this logdir's (by name relative to it), for the trim.

    Raises:
        LogdirStateError: if another one holds points the resumed run would write again, or
            an older version's record cannot say whose points its files hold.
    """
    last = -1 if restored_step is None else restored_step
    own = {}
    # An older version's record says nothing of the app or model: only a checkpoint that
    # restores proves its files this model's; without one they are emptied by no one.
    unproven_owner = record is not None and record.app is None and record.model is None
    for name, path in event_files.event_files_by_name(logdir).items():
        if record is not None and record.is_ours(name, path):
            if unproven_owner and restored_step is None and event_files.largest_step(path) >= 0:
                raise LogdirStateError(
                    f"logdir {logdir}: its record, from an older version, does not say "
                    f"which app or model wrote {name}, which holds points, and no checkpoint "
                    "proves them this model's; starting over would erase them: move them "
                    "away, or pass a new --logdir"
                )
            own[name] = path
        elif event_files.largest_step(path) > last:
            if restored_step is None:
                raise LogdirStateError(
                    f"logdir {logdir} already holds event files that no run of this app "
                    f"recorded writing ({name}, ...) and no checkpoint to resume from; "
                    "pass a new --logdir, or move them away"
                )
            raise LogdirStateError(
                f"logdir {logdir}: {name} holds points after step {restored_step}, the "
                "checkpoint to resume from, but no run of this app recorded writing it (an "
                "older version, or another program), so it cannot be trimmed; move it away, "
                "or pass a new --logdir"
            )
    return own


def repair_before_writing(logdir: str, plan: RepairPlan) -> None:
    """Before the chief's first write: removes its own leftovers (a trim's, the record's, a
    killed save's), and repairs the list of checkpoints as `plan` says."""
    trim.remove_trim_leftovers(logdir)
    for path in run_record.leftovers(logdir):
        tf.io.gfile.remove(path)
    for path in plan.files_to_remove:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    directory = f"{logdir}/{CHECKPOINT_DIRECTORY}"
    if plan.state_to_write:
        checkpoints.write_state(directory, plan.state_to_write)
    elif plan.remove_state and tf.io.gfile.exists(f"{directory}/{STATE_FILE_NAME}"):
        tf.io.gfile.remove(f"{directory}/{STATE_FILE_NAME}")
