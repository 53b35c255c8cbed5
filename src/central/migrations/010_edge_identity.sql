-- Two edge daemons configured with the same SITE_NAME (a test machine started
-- with the site's configuration, a replaced edge left running) both sync as
-- that site. Nothing is lost or doubled (central keys on transaction ids), but
-- their batches wait on each other's order and each replica receives the
-- other's rows, and nobody could see why. Each edge process now names itself
-- (x-opsdb-edge-id, random per start); central keeps the last one it heard
-- from, the ones heard lately (id → epoch ms), and when one was last heard
-- again after another had taken over.
ALTER TABLE site ADD COLUMN edge_id uuid;
ALTER TABLE site ADD COLUMN recent_edges jsonb;
ALTER TABLE site ADD COLUMN edge_conflict_at timestamptz;
