-- 0002_model_subjects.sql - the subjects a pruned model was calibrated on.
--
-- A JSON array of the distinct subject pseudonyms of the job's calibration
-- batches, written with the model when its job succeeds.  NULL for uploaded
-- models and for models pruned before this version, which are then not
-- tied to anyone.  Inference requests that name a subject are checked
-- against it, so that one patient's personal model is not run on another
-- patient's ECG by mistake.
ALTER TABLE models ADD COLUMN subjects TEXT;
