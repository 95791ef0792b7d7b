-- 0004_job_interruptions.sql - how often the daemon died under a job.
--
-- "attempts" counts every start of a job, also those after a clean stop
-- (which queues a running job again).  "interrupted" counts only the
-- starts that ended with the daemon gone (a crash, an out-of-memory
-- kill), found at the next start-up; after three the job is failed
-- rather than started again, since it may be what kills the daemon.
ALTER TABLE jobs ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
