"""Cross-section rules of backups: a job's destinations, severity and recipients; a drill's
job and where its copy is restored.

Part of `cross_check` (crossref.py).
"""

from __future__ import annotations


class BackupRules:
    """The rules of `backups.jobs` and `backups.drills`.

    A part of the checker in crossref.py, which supplies the configuration, the names
    defined in the file and the helpers that report problems: `error`, `warn`, `ref`,
    `refs`, `severity` and `check_ref`.
    """

    def backups(self):
        b = self.config.backups
        for name, job in b.jobs.items():
            path = ("backups", "jobs", name)
            self.refs(job.to, self.names["destinations"], "destination", (*path, "to"))
            self.severity(job.severity, (*path, "severity"))
            if job.encrypt:
                for r_index, recipient in enumerate(job.encrypt.recipients):
                    if not recipient.startswith(("age1", "ssh-ed25519 ", "ssh-rsa ")):
                        self.error(
                            (*path, "encrypt", "recipients", r_index),
                            "expected an age public key (age1...) or an SSH public key",
                        )
        for name, drill in b.drills.items():
            path = ("backups", "drills", name)
            self.severity(drill.severity, (*path, "severity"))
            job = b.jobs.get(drill.job)
            if job is None:
                self.ref(drill.job, self.names["jobs"], "backup job", (*path, "job"))
                continue
            source = self.reg.types["backup source"].get(job.source.type)
            restores_to = getattr(source, "restores_to", "database")
            if restores_to == "database" and drill.scratch_dsn is None:
                self.error(
                    path,
                    f"drill of {job.source.type} job {drill.job!r} needs "
                    "`scratch_dsn`: the server the copy is restored into",
                )
            if restores_to == "directory" and drill.scratch_dir is None and drill.verify:
                self.warn(
                    path,
                    "drills of file backups restore into a temporary directory; "
                    "`verify` checks cannot be pointed at it",
                )
            for v_index, check in enumerate(drill.verify):
                self.check_ref(check, (*path, "verify", v_index))
