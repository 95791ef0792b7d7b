-- 0003_batch_idempotency.sql - retry-safe batch uploads.
--
-- A gateway that lost the answer to an upload sends it again with the
-- same Idempotency-Key header.  The key and the SHA-256 of the batch as
-- stored (subject, lead, rate, samples, annotations; not of the body,
-- whose multipart boundary changes from one try to the next) find the
-- batch stored the first time, instead of storing a second copy of the
-- patient's ECG.  Both are NULL for uploads without a key and for
-- batches stored before this version; SQLite's unique index lets any
-- number of NULLs through.
ALTER TABLE batches ADD COLUMN idempotency_key TEXT;
ALTER TABLE batches ADD COLUMN batch_sha256 TEXT;
CREATE UNIQUE INDEX batches_idempotency_key ON batches(idempotency_key);
