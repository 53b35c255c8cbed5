-- Exactly-once is keyed on (site, transaction_id). A per-site seq orders one
-- edge's buffer, but an edge rebuilt on a new, empty disk starts again at
-- seq 1: a unique (site, seq) would then reject every new write of that site
-- as a conflict. Keep the index for lookups, not as a constraint.
DROP INDEX applied_transaction_site_seq;
CREATE INDEX applied_transaction_site_seq ON applied_transaction (site, seq);
