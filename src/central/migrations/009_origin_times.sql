-- Rows keep the time they were written at their origin. apply.ts now sends,
-- with every row a transaction creates, created_at (and updated_at where the
-- table has it) set to the transaction's created_at, and with every update
-- updated_at: the time the site wrote it. Before, central stamped them with
-- now(), the time it applied them: after a week without a link, an edge's
-- observations were "created" a week late at central, and their copies at the
-- edge changed their created_at when the replica received central's rows.
-- A row sent without these columns (a caller of an older apply.ts) still gets
-- now(). The two functions below are those of 004 and 008 with only that
-- changed.

CREATE OR REPLACE FUNCTION opsdb_apply_step(p_op text, p_table text, p_cols jsonb, p_rows jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  n integer := 1;
BEGIN
  IF p_op = 'upsert' AND p_table <> 'user_preference' THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('upsert is not supported for %s', p_table);
  END IF;
  CASE p_table
  WHEN 'executed_obs_unit' THEN
    IF p_op = 'update' THEN
      UPDATE executed_obs_unit t SET
        status = CASE WHEN p_cols ? 'status' THEN r.status ELSE t.status END,
        end_time = CASE WHEN p_cols ? 'end_time' THEN r.end_time ELSE t.end_time END,
        mean_pwv = CASE WHEN p_cols ? 'mean_pwv' THEN r.mean_pwv ELSE t.mean_pwv END,
        mean_elevation = CASE WHEN p_cols ? 'mean_elevation' THEN r.mean_elevation ELSE t.mean_elevation END,
        updated_at = coalesce(r.updated_at, now())
      FROM jsonb_populate_record(NULL::executed_obs_unit, p_rows->0) r WHERE t.id = r.id;
      GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
      INSERT INTO executed_obs_unit (id, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation,
                                     instrument_module_configuration_id, created_at, updated_at)
      SELECT id, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation, instrument_module_configuration_id,
             coalesce(created_at, now()), coalesce(updated_at, now())
        FROM jsonb_populate_recordset(NULL::executed_obs_unit, p_rows);
    END IF;
  WHEN 'raw_data_package' THEN
    IF p_op = 'update' THEN
      UPDATE raw_data_package t SET
        state = CASE WHEN p_cols ? 'state' THEN r.state ELSE t.state END,
        size = CASE WHEN p_cols ? 'size' THEN r.size ELSE t.size END,
        checksum = CASE WHEN p_cols ? 'checksum' THEN r.checksum ELSE t.checksum END,
        name = CASE WHEN p_cols ? 'name' THEN r.name ELSE t.name END,
        updated_at = coalesce(r.updated_at, now())
      FROM jsonb_populate_record(NULL::raw_data_package, p_rows->0) r WHERE t.id = r.id;
      GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
      INSERT INTO raw_data_package (id, name, executed_obs_unit_id, state, size, checksum, created_at, updated_at)
      SELECT id, name, executed_obs_unit_id, coalesce(state, 'open'), size, checksum, coalesce(created_at, now()), coalesce(updated_at, now())
        FROM jsonb_populate_recordset(NULL::raw_data_package, p_rows);
    END IF;
  WHEN 'raw_data_file' THEN
    IF p_op = 'update' THEN
      UPDATE raw_data_file t SET
        raw_data_package_id = CASE WHEN p_cols ? 'raw_data_package_id' THEN r.raw_data_package_id ELSE t.raw_data_package_id END,
        checksum = CASE WHEN p_cols ? 'checksum' THEN r.checksum ELSE t.checksum END,
        size = CASE WHEN p_cols ? 'size' THEN r.size ELSE t.size END,
        path = CASE WHEN p_cols ? 'path' THEN r.path ELSE t.path END
      FROM jsonb_populate_record(NULL::raw_data_file, p_rows->0) r WHERE t.id = r.id;
      GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
      INSERT INTO raw_data_file (id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id, created_at)
      SELECT id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id, coalesce(created_at, now())
        FROM jsonb_populate_recordset(NULL::raw_data_file, p_rows);
    END IF;
  WHEN 'user_preference' THEN
    IF p_op = 'update' THEN
      UPDATE user_preference t SET preferences = r.preferences, updated_at = coalesce(r.updated_at, now())
      FROM jsonb_populate_record(NULL::user_preference, p_rows->0) r WHERE t.user_id = r.user_id;
      GET DIAGNOSTICS n = ROW_COUNT;
    ELSIF p_op = 'upsert' THEN
      INSERT INTO user_preference (user_id, preferences, updated_at)
      SELECT user_id, preferences, coalesce(updated_at, now()) FROM jsonb_populate_recordset(NULL::user_preference, p_rows)
      ON CONFLICT (user_id) DO UPDATE SET preferences = EXCLUDED.preferences, updated_at = EXCLUDED.updated_at;
    ELSE
      INSERT INTO user_preference (user_id, preferences, updated_at)
      SELECT user_id, preferences, coalesce(updated_at, now()) FROM jsonb_populate_recordset(NULL::user_preference, p_rows);
    END IF;
  ELSE
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('table %s is not writable', p_table);
  END CASE;
  IF n = 0 THEN
    RAISE EXCEPTION USING ERRCODE = 'P0002', TABLE = p_table,
      MESSAGE = format('%s %s not found', p_table, coalesce(p_rows->0->>'id', p_rows->0->>'user_id'));
  END IF;
END $$;


CREATE OR REPLACE FUNCTION opsdb_apply_inserts(
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
    -- The same columns and defaults as opsdb_apply_step (009), parents first.
    INSERT INTO executed_obs_unit (id, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation,
                                   instrument_module_configuration_id, created_at, updated_at)
    SELECT id, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation, instrument_module_configuration_id,
           coalesce(created_at, now()), coalesce(updated_at, now())
      FROM jsonb_populate_recordset(NULL::executed_obs_unit, p_obs);
    INSERT INTO raw_data_package (id, name, executed_obs_unit_id, state, size, checksum, created_at, updated_at)
    SELECT id, name, executed_obs_unit_id, coalesce(state, 'open'), size, checksum, coalesce(created_at, now()), coalesce(updated_at, now())
      FROM jsonb_populate_recordset(NULL::raw_data_package, p_pkg);
    INSERT INTO raw_data_file (id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id, created_at)
    SELECT id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id, coalesce(created_at, now())
      FROM jsonb_populate_recordset(NULL::raw_data_file, p_file);
    INSERT INTO user_preference (user_id, preferences, updated_at)
    SELECT user_id, preferences, coalesce(updated_at, now()) FROM jsonb_populate_recordset(NULL::user_preference, p_pref);
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

