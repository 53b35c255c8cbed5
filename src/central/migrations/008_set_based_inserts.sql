-- A faster path for the batches a backlog drain is made of: transactions that
-- only create rows (create-observation: an observation, a package, files).
-- Central (src/central/apply.ts) sends such a batch as one array of inbox
-- rows and one array of rows per table, and this function inserts each with
-- one statement, instead of one function call and one INSERT per step and
-- transaction (004). bench:sync measured those per-step calls as most of
-- central's database time.
--
-- apply.ts only comes here when applying the rows table by table, parents
-- first, gives what applying the transactions one by one in seq order would:
-- every step creates rows, and no row refers to a row that a later
-- transaction of the batch, or a later step of its own, creates. Any repeat (an inbox row already there)
-- or any failing row makes this function return NULL having written nothing
-- (its work is a subtransaction), and apply.ts then applies the batch one
-- transaction at a time (opsdb_apply_batch), which answers each transaction
-- for itself: applied, duplicate or rejected.
--
-- The change feed's notes for these rows are written here too, one INSERT
-- per table; the row triggers of 002 skip rows while opsdb.noted_in_bulk is
-- set (their WHEN clause is checked without calling the trigger function).

CREATE FUNCTION opsdb_apply_inserts(
  p_site text, p_by integer, p_inbox jsonb, p_obs jsonb, p_pkg jsonb, p_file jsonb, p_pref jsonb
) RETURNS jsonb
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
  m integer := jsonb_array_length(p_inbox);
  n integer;
  v_state text;
BEGIN
  BEGIN
    INSERT INTO applied_transaction (site, transaction_id, seq, endpoint, payload_hash, created_at, applied_by)
    SELECT p_site, x.transaction_id, x.seq, x.endpoint, x.hash, x.created_at, p_by
      FROM jsonb_to_recordset(p_inbox) AS x(transaction_id uuid, seq bigint, endpoint text, hash text, created_at timestamptz)
    ON CONFLICT (site, transaction_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n < m THEN
      -- A repeat: each transaction must be answered for itself.
      RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = 'batch holds a transaction already applied';
    END IF;

    PERFORM set_config('opsdb.noted_in_bulk', 'on', true);
    -- The same columns and defaults as opsdb_apply_step (004), parents first.
    INSERT INTO executed_obs_unit (id, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation,
                                   instrument_module_configuration_id)
    SELECT id, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation, instrument_module_configuration_id
      FROM jsonb_populate_recordset(NULL::executed_obs_unit, p_obs);
    INSERT INTO raw_data_package (id, name, executed_obs_unit_id, state, size, checksum)
    SELECT id, name, executed_obs_unit_id, coalesce(state, 'open'), size, checksum
      FROM jsonb_populate_recordset(NULL::raw_data_package, p_pkg);
    INSERT INTO raw_data_file (id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id)
    SELECT id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id
      FROM jsonb_populate_recordset(NULL::raw_data_file, p_file);
    INSERT INTO user_preference (user_id, preferences)
    SELECT user_id, preferences FROM jsonb_populate_recordset(NULL::user_preference, p_pref);
    PERFORM set_config('opsdb.noted_in_bulk', '', true);
    -- What opsdb_note_change (002) notes for each of these rows.
    INSERT INTO change_log (table_name, row_key, site)
    SELECT 'executed_obs_unit', x.id::text, x.site FROM jsonb_to_recordset(p_obs) AS x(id uuid, site text)
    UNION ALL
    SELECT 'raw_data_package', x.id::text, e.site
      FROM jsonb_to_recordset(p_pkg) AS x(id uuid, executed_obs_unit_id uuid) LEFT JOIN executed_obs_unit e ON e.id = x.executed_obs_unit_id
    UNION ALL
    SELECT 'raw_data_file', x.id::text, e.site
      FROM jsonb_to_recordset(p_file) AS x(id uuid, executed_obs_unit_id uuid) LEFT JOIN executed_obs_unit e ON e.id = x.executed_obs_unit_id
    UNION ALL
    SELECT 'user_preference', x.user_id::text, NULL FROM jsonb_to_recordset(p_pref) AS x(user_id integer);
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
    IF v_state LIKE '22%' OR v_state LIKE '23%' THEN
      RETURN NULL;
    END IF;
    RAISE;
  END;
  RETURN (SELECT jsonb_agg(jsonb_build_object('result', 'applied')) FROM generate_series(1, m));
END $$;

-- The row triggers of the tables above, skipping rows noted in bulk.
DROP TRIGGER note_change ON executed_obs_unit;
DROP TRIGGER note_change ON raw_data_package;
DROP TRIGGER note_change ON raw_data_file;
DROP TRIGGER note_change ON user_preference;
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON executed_obs_unit FOR EACH ROW
  WHEN (coalesce(current_setting('opsdb.noted_in_bulk', true), '') <> 'on') EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON raw_data_package FOR EACH ROW
  WHEN (coalesce(current_setting('opsdb.noted_in_bulk', true), '') <> 'on') EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON raw_data_file FOR EACH ROW
  WHEN (coalesce(current_setting('opsdb.noted_in_bulk', true), '') <> 'on') EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON user_preference FOR EACH ROW
  WHEN (coalesce(current_setting('opsdb.noted_in_bulk', true), '') <> 'on') EXECUTE FUNCTION opsdb_note_change();
