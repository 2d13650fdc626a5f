"""The chief's entries in its logdir's record (common/logdir/run_record.py) as its run goes: this
run added before its first write, each event file it creates proven as soon as it is there, each
save begun and done, and its end.

The record is updated before anything it vouches for is written, so a kill at any point leaves a
record that proves no file the run had not written yet (see run_record's docstring).
"""

from common.logdir import event_files, run_record
from common.logdir.prepare import OtherAppError


class RecordKeeper:
    """Reads and updates one logdir's record for the chief's run (no other worker writes it)."""

    def __init__(self, logdir: str, app: str | None, model: dict[str, object] | None) -> None:
        """Touches nothing.

        Args:
            logdir: the run's directory.
            app: which app this is (`run_record.app_name(config)`); None: not checked.
            model: this run's model's fingerprint (`run_record.model_identity`), or None.
        """
        self.logdir = logdir
        self.app = app
        self.model = model
        # The record as read by `read`, then as this run keeps it; None where there is none.
        self.record: run_record.RunRecord | None = None

    def read(self) -> run_record.RunRecord | None:
        """Reads the logdir's record (None if there is none yet).

        Raises:
            OtherAppError: if it holds a run of another app.
            common.logdir.run_record.RecordError: if it is not readable.
        """
        record = run_record.read(self.logdir)
        self.record = record
        if record is not None and record.app and self.app and record.app != self.app:
            raise OtherAppError(
                f"logdir {self.logdir} holds a run of {record.app}, not of {self.app}: its "
                "files would be trimmed or overwritten; pass a new --logdir"
            )
        return record

    def begin(self, last_saved_step: int | None) -> None:
        """Records this run (its app and model, and the checkpoint it restored: an older
        version's checkpoints are adopted too), before its first write; then makes the record
        the one `run_record.claim_files` updates (for the Projector's files)."""
        record = self.record or run_record.RunRecord()
        record.add_this_run()
        record.app = record.app or self.app
        record.model = record.model or self.model
        record.saving = None
        if last_saved_step is not None:  # Adopts an older version's checkpoints, too.
            record.last_saved = max(record.last_saved or 0, last_saved_step)
        run_record.write(self.logdir, record)
        self.record = record
        run_record.set_live(self.logdir, record)

    def record_event_files(self) -> None:
        """Adds the event files this run created (its name is in theirs, its second in their
        header) to the record, with their proofs, and lengthens the proofs of growing files."""
        record = self.record
        files = event_files.event_files_by_name(self.logdir)
        record.extend_proofs(files)
        record.prove(
            {
                name: path
                for name, path in files.items()
                if name not in record.event_file_proofs and record.is_ours(name, path)
            }
        )

    def update(self) -> None:
        """Records the event files made so far, and writes the record."""
        self.record_event_files()
        run_record.write(self.logdir, self.record)

    def record_new_writers(self, existing: set[str], rewritten: dict[str, str]) -> None:
        """After the writers opened: proves their new files (those not in `existing`, by name,
        not only by the pid in it: that needs the clock to have stayed at or after the run's
        recorded start) and the trim's `rewritten` files anew (their first bytes may change),
        then writes the record."""
        files = event_files.event_files_by_name(self.logdir)
        self.record.prove(
            {
                name: files[name]
                for name in sorted(set(files) - existing | set(rewritten))
                if name in files
            }
        )
        self.update()

    def saving(self, step: int) -> None:
        """Records that the save of checkpoint `step` begins (its files are leftovers if it is
        killed), with the event files made so far, whose points it covers."""
        self.record.saving = step
        self.update()

    def saved(self, step: int) -> None:
        """Records checkpoint `step` as saved."""
        self.record.saving = None
        self.record.last_saved = step
        run_record.write(self.logdir, self.record)

    def end(self) -> None:
        """At the end of the chief's run, however it ends but a kill: lists the event files it
        created since the last update and marks it ended, so no file named like its own is
        adopted later (see common/logdir/run_record.py). Best effort: without the mark, a later
        run adopts by name as before, with the same checks."""
        if self.record is None:
            return
        run_record.set_live(self.logdir, None)
        try:
            self.record_event_files()
            self.record.mark_ended()
            run_record.write(self.logdir, self.record)
        except Exception:  # Best effort: the block's own error, if any, is the one to report.
            pass
