-- Applies a batch of already-validated transactions in one call: one round
-- trip per batch instead of several per transaction. Each transaction runs in
-- its own exception block (a savepoint): a rejected one rolls back alone and
-- its error is returned; any error that is not the transaction's own fault
-- (not a data or constraint error) aborts the whole call.
--
-- p_txs: [{transaction_id, seq, endpoint, created_at, hash,
--          steps: [{op, table, key, cols, stamp, rows}]}]
-- rows carry the key column; cols are the columns to write (the key included
-- for inserts); column and table names were checked against a whitelist by
-- the caller and are quoted with %I here all the same.
CREATE FUNCTION opsdb_apply_batch(p_site text, p_by integer, p_txs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  tx jsonb;
  step jsonb;
  results jsonb := '[]'::jsonb;
  n integer;
  prior text;
  col_list text;
  set_list text;
  conflict text;
  v_state text;
  v_message text;
  v_detail text;
  v_constraint text;
  v_table text;
BEGIN
  FOR tx IN SELECT value FROM jsonb_array_elements(p_txs) LOOP
    BEGIN
      INSERT INTO applied_transaction (site, transaction_id, seq, endpoint, payload_hash, created_at, applied_by)
      VALUES (p_site, (tx->>'transaction_id')::uuid, (tx->>'seq')::bigint, tx->>'endpoint', tx->>'hash',
              (tx->>'created_at')::timestamptz, p_by)
      ON CONFLICT (site, transaction_id) DO NOTHING;
      GET DIAGNOSTICS n = ROW_COUNT;
      IF n = 0 THEN
        SELECT payload_hash INTO prior FROM applied_transaction
         WHERE site = p_site AND transaction_id = (tx->>'transaction_id')::uuid;
        IF prior = tx->>'hash' THEN
          results := results || jsonb_build_array(jsonb_build_object('result', 'duplicate'));
        ELSE
          results := results || jsonb_build_array(jsonb_build_object('result', 'rejected', 'sqlstate', 'OPSDB',
            'message', 'already applied with a different payload'));
        END IF;
        CONTINUE;
      END IF;
      FOR step IN SELECT value FROM jsonb_array_elements(tx->'steps') LOOP
        SELECT string_agg(format('%I', c), ', ') INTO col_list FROM jsonb_array_elements_text(step->'cols') AS c;
        IF step->>'op' = 'update' THEN
          SELECT string_agg(format('%1$I = r.%1$I', c), ', ') INTO set_list FROM jsonb_array_elements_text(step->'cols') AS c;
          IF (step->>'stamp')::boolean THEN set_list := set_list || ', updated_at = now()'; END IF;
          EXECUTE format('UPDATE %1$I t SET %2$s FROM jsonb_populate_record(NULL::%1$I, $1) r WHERE t.%3$I = r.%3$I',
                         step->>'table', set_list, step->>'key')
            USING step->'rows'->0;
          GET DIAGNOSTICS n = ROW_COUNT;
          IF n = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format('%s %s not found', step->>'table', step->'rows'->0->>(step->>'key')),
              TABLE = step->>'table';
          END IF;
        ELSE
          conflict := '';
          IF step->>'op' = 'upsert' THEN
            SELECT string_agg(format('%1$I = EXCLUDED.%1$I', c), ', ') INTO set_list
              FROM jsonb_array_elements_text(step->'cols') AS c WHERE c <> step->>'key';
            IF (step->>'stamp')::boolean THEN set_list := concat_ws(', ', set_list, 'updated_at = now()'); END IF;
            conflict := format(' ON CONFLICT (%I) DO UPDATE SET %s', step->>'key', set_list);
          END IF;
          EXECUTE format('INSERT INTO %1$I (%2$s) SELECT %2$s FROM jsonb_populate_recordset(NULL::%1$I, $1)%3$s',
                         step->>'table', col_list, conflict)
            USING step->'rows';
        END IF;
      END LOOP;
      results := results || jsonb_build_array(jsonb_build_object('result', 'applied'));
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
