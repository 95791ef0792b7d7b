-- 0001_init.sql - the first schema of the ecgpruned store.
--
-- Applied by the daemon at start-up inside one transaction, after which
-- PRAGMA user_version is 1.  Later changes go into 0002_*.sql and so on;
-- a file is never edited once released.

-- Ids are AUTOINCREMENT so that an id is never reused after a delete: a
-- client holding the id of a deleted batch must get 404, not another
-- subject's ECG.

-- Models: the safetensors bytes as uploaded or produced by a job, with the
-- architecture JSON and the sizes the API reports.  Lineage: the model and
-- the job a pruned model came from (NULL for uploads).
CREATE TABLE models (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    architecture    TEXT NOT NULL,
    parameters      INTEGER NOT NULL,
    macs_per_second REAL NOT NULL,
    parent_model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
    parent_job_id   INTEGER,
    created_at      TEXT NOT NULL,
    weights         BLOB NOT NULL
);
CREATE INDEX models_sha256 ON models(sha256);

-- ECG batches: one lead, in mV as little-endian float32, with the
-- reference annotations if supplied (JSON [{"sample":..,"symbol":..}]).
-- subject is a pseudonym chosen by the clinic; no name is ever stored.
CREATE TABLE batches (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    subject       TEXT NOT NULL,
    sampling_rate REAL NOT NULL,
    lead          TEXT NOT NULL,
    n_samples     INTEGER NOT NULL,
    annotations   TEXT,
    n_beats       INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    samples       BLOB NOT NULL
);

-- Jobs: parameters as submitted (JSON), state machine
-- queued -> running -> succeeded | failed | cancelled.
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id        INTEGER REFERENCES models(id) ON DELETE SET NULL,
    params          TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN
                      ('queued', 'running', 'succeeded', 'failed',
                       'cancelled')),
    progress        REAL NOT NULL DEFAULT 0,
    progress_group  INTEGER NOT NULL DEFAULT 0,
    progress_groups INTEGER NOT NULL DEFAULT 0,
    stage           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    result          TEXT,
    result_model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
    error           TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_state ON jobs(state);

-- The batches a job calibrates (role 'calib') or scores (role 'holdout').
CREATE TABLE job_batches (
    job_id   INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    batch_id INTEGER NOT NULL,
    role     TEXT NOT NULL CHECK (role IN ('calib', 'holdout')),
    PRIMARY KEY (job_id, batch_id, role)
);
CREATE INDEX job_batches_batch ON job_batches(batch_id);

-- Kept channels per job and group (producer layer).
CREATE TABLE masks (
    job_id          INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    group_index     INTEGER NOT NULL,
    producer        TEXT NOT NULL,
    channels_before INTEGER NOT NULL,
    kept            TEXT NOT NULL,
    PRIMARY KEY (job_id, group_index)
);

-- Inference records, kept only when the configuration asks for them.
CREATE TABLE inferences (
    id         INTEGER PRIMARY KEY,
    model_id   INTEGER NOT NULL,
    n_samples  INTEGER NOT NULL,
    n_beats    INTEGER NOT NULL,
    summary    TEXT NOT NULL,
    ms         REAL NOT NULL,
    created_at TEXT NOT NULL
);
