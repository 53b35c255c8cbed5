-- Faster apply (bench:sync): static SQL per table, so PostgreSQL plans each
-- statement once per session instead of on every EXECUTE, and a fast path
-- that applies a whole batch in one subtransaction. Only when that fails is
-- the batch redone with one subtransaction per transaction, so a rejected
-- transaction still rolls back alone.
--
-- Updates change only the columns named in p_cols; inserts leave the
-- timestamp columns to their defaults.

CREATE FUNCTION opsdb_apply_step(p_op text, p_table text, p_cols jsonb, p_rows jsonb) RETURNS void
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
        updated_at = now()
      FROM jsonb_populate_record(NULL::executed_obs_unit, p_rows->0) r WHERE t.id = r.id;
      GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
      INSERT INTO executed_obs_unit (id, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation,
                                     instrument_module_configuration_id)
      SELECT id, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation, instrument_module_configuration_id
        FROM jsonb_populate_recordset(NULL::executed_obs_unit, p_rows);
    END IF;
  WHEN 'raw_data_package' THEN
    IF p_op = 'update' THEN
      UPDATE raw_data_package t SET
        state = CASE WHEN p_cols ? 'state' THEN r.state ELSE t.state END,
        size = CASE WHEN p_cols ? 'size' THEN r.size ELSE t.size END,
        checksum = CASE WHEN p_cols ? 'checksum' THEN r.checksum ELSE t.checksum END,
        name = CASE WHEN p_cols ? 'name' THEN r.name ELSE t.name END,
        updated_at = now()
      FROM jsonb_populate_record(NULL::raw_data_package, p_rows->0) r WHERE t.id = r.id;
      GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
      INSERT INTO raw_data_package (id, name, executed_obs_unit_id, state, size, checksum)
      SELECT id, name, executed_obs_unit_id, coalesce(state, 'open'), size, checksum
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
      INSERT INTO raw_data_file (id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id)
      SELECT id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id
        FROM jsonb_populate_recordset(NULL::raw_data_file, p_rows);
    END IF;
  WHEN 'user_preference' THEN
    IF p_op = 'update' THEN
      UPDATE user_preference t SET preferences = r.preferences, updated_at = now()
      FROM jsonb_populate_record(NULL::user_preference, p_rows->0) r WHERE t.user_id = r.user_id;
      GET DIAGNOSTICS n = ROW_COUNT;
    ELSIF p_op = 'upsert' THEN
      INSERT INTO user_preference (user_id, preferences)
      SELECT user_id, preferences FROM jsonb_populate_recordset(NULL::user_preference, p_rows)
      ON CONFLICT (user_id) DO UPDATE SET preferences = EXCLUDED.preferences, updated_at = now();
    ELSE
      INSERT INTO user_preference (user_id, preferences)
      SELECT user_id, preferences FROM jsonb_populate_recordset(NULL::user_preference, p_rows);
    END IF;
  ELSE
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('table %s is not writable', p_table);
  END CASE;
  IF n = 0 THEN
    RAISE EXCEPTION USING ERRCODE = 'P0002', TABLE = p_table,
      MESSAGE = format('%s %s not found', p_table, coalesce(p_rows->0->>'id', p_rows->0->>'user_id'));
  END IF;
END $$;

-- One transaction: its result, or an exception when a step fails.
CREATE FUNCTION opsdb_apply_one(p_site text, p_by integer, tx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  step jsonb;
  n integer;
  prior text;
BEGIN
  INSERT INTO applied_transaction (site, transaction_id, seq, endpoint, payload_hash, created_at, applied_by)
  VALUES (p_site, (tx->>'transaction_id')::uuid, (tx->>'seq')::bigint, tx->>'endpoint', tx->>'hash',
          (tx->>'created_at')::timestamptz, p_by)
  ON CONFLICT (site, transaction_id) DO NOTHING;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n = 0 THEN
    SELECT payload_hash INTO prior FROM applied_transaction WHERE site = p_site AND transaction_id = (tx->>'transaction_id')::uuid;
    IF prior = tx->>'hash' THEN
      RETURN jsonb_build_object('result', 'duplicate');
    END IF;
    RETURN jsonb_build_object('result', 'rejected', 'sqlstate', 'OPSDB', 'message', 'already applied with a different payload');
  END IF;
  FOR step IN SELECT value FROM jsonb_array_elements(tx->'steps') LOOP
    PERFORM opsdb_apply_step(step->>'op', step->>'table', step->'cols', step->'rows');
  END LOOP;
  RETURN jsonb_build_object('result', 'applied');
END $$;

CREATE OR REPLACE FUNCTION opsdb_apply_batch(p_site text, p_by integer, p_txs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  tx jsonb;
  results jsonb := '[]'::jsonb;
  v_state text;
  v_message text;
  v_detail text;
  v_constraint text;
  v_table text;
BEGIN
  -- Fast path: every transaction applies; one subtransaction for all.
  BEGIN
    FOR tx IN SELECT value FROM jsonb_array_elements(p_txs) LOOP
      results := results || jsonb_build_array(opsdb_apply_one(p_site, p_by, tx));
    END LOOP;
    RETURN results;
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
    IF NOT (v_state LIKE '22%' OR v_state LIKE '23%' OR v_state = 'P0002') THEN
      RAISE;
    END IF;
  END;
  -- Some transaction failed: redo with one subtransaction each, so only it rolls back.
  results := '[]'::jsonb;
  FOR tx IN SELECT value FROM jsonb_array_elements(p_txs) LOOP
    BEGIN
      results := results || jsonb_build_array(opsdb_apply_one(p_site, p_by, tx));
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL,
                              v_constraint = CONSTRAINT_NAME, v_table = TABLE_NAME;
      IF v_state LIKE '22%' OR v_state LIKE '23%' OR v_state = 'P0002' THEN
        results := results || jsonb_build_array(jsonb_build_object('result', 'rejected', 'sqlstate', v_state,
          'message', v_message, 'detail', nullif(v_detail, ''), 'constraint', nullif(v_constraint, ''), 'table', nullif(v_table, '')));
      ELSE
        RAISE;
      END IF;
    END;
  END LOOP;
  RETURN results;
END $$;
