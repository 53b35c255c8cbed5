-- applied_at was now(), the start of the database transaction. A batch that
-- waits for the site's turn (the batch before it still applying, 006) starts
-- earlier than that batch commits, so its transactions showed an earlier
-- applied_at than the ones they came after. clock_timestamp() is the moment
-- the row is written, after the wait: applied_at follows the apply order.
ALTER TABLE applied_transaction ALTER COLUMN applied_at SET DEFAULT clock_timestamp();
