-- An edge may send its next batch while central still applies the one
-- before it. Each batch names itself (batch_id) and the batch it must follow
-- (after_batch); central applies it only once that one has committed, which
-- it tells by the last batch it committed for the site.
ALTER TABLE site ADD COLUMN last_batch_id uuid;
