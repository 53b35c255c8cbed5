-- The change feed for edge replicas (GET /api/sync/changes).
--
-- Row triggers note which rows changed in change_log. A deferred constraint
-- trigger gives each writing transaction one feed position at commit time,
-- under a row lock on feed_position, so positions become visible in order:
-- a reader that has seen position N can never later find a committed N-1.
-- Only the first change of a transaction does that work; the rest return at once.

CREATE TABLE feed_position (
  id  integer PRIMARY KEY CHECK (id = 1),
  pos bigint NOT NULL
);
INSERT INTO feed_position VALUES (1, 0);

CREATE TABLE feed_tx (
  pos          bigint PRIMARY KEY,
  xid          xid8 NOT NULL UNIQUE,
  committed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE change_log (
  id         bigserial PRIMARY KEY,
  xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
  table_name text NOT NULL,
  row_key    text NOT NULL,
  -- NULL: every site may see it; else only this site (its rows, its site account).
  site       text
);
CREATE INDEX change_log_xid ON change_log (xid);

CREATE FUNCTION opsdb_feed_assign() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE p bigint;
BEGIN
  IF current_setting('opsdb.feed_pos', true) IS NOT NULL AND current_setting('opsdb.feed_pos', true) <> '' THEN
    RETURN NULL;
  END IF;
  UPDATE feed_position SET pos = pos + 1 WHERE id = 1 RETURNING pos INTO p;
  INSERT INTO feed_tx (pos, xid) VALUES (p, pg_current_xact_id());
  PERFORM set_config('opsdb.feed_pos', p::text, true);
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER change_log_assign AFTER INSERT ON change_log
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION opsdb_feed_assign();

-- One function per kind of row: what its key is and which sites may see it.
CREATE FUNCTION opsdb_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  k text;
  s text;
BEGIN
  CASE TG_TABLE_NAME
    WHEN 'executed_obs_unit' THEN k := NEW.id::text; s := NEW.site;
    WHEN 'raw_data_package' THEN
      k := NEW.id::text; SELECT site INTO s FROM executed_obs_unit WHERE id = NEW.executed_obs_unit_id;
    WHEN 'raw_data_file' THEN
      k := NEW.id::text; SELECT site INTO s FROM executed_obs_unit WHERE id = NEW.executed_obs_unit_id;
    WHEN 'user_preference' THEN k := NEW.user_id::text; s := NULL;
    WHEN 'user' THEN k := NEW.id::text; s := NEW.site_name;
    WHEN 'user_role' THEN
      k := NEW.user_id::text; SELECT site_name INTO s FROM "user" WHERE id = NEW.user_id;
    WHEN 'api_token' THEN
      k := NEW.id::text; SELECT site_name INTO s FROM "user" WHERE id = NEW.user_id;
    ELSE k := NEW.id::text; s := NULL;
  END CASE;
  INSERT INTO change_log (table_name, row_key, site) VALUES (TG_TABLE_NAME, k, s);
  RETURN NULL;
END $$;

-- user_role rows are deleted when roles are taken away; the edge re-reads the user's roles.
CREATE FUNCTION opsdb_note_role_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO change_log (table_name, row_key, site)
  SELECT 'user_role', OLD.user_id::text, site_name FROM "user" WHERE id = OLD.user_id;
  RETURN NULL;
END $$;

CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON instrument FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON instrument_module FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON instrument_module_configuration FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON observing_program FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON obs_unit FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON executed_obs_unit FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON raw_data_package FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON raw_data_file FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON user_preference FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON "user" FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_change AFTER INSERT OR UPDATE ON user_role FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();
CREATE TRIGGER note_role_delete AFTER DELETE ON user_role FOR EACH ROW EXECUTE FUNCTION opsdb_note_role_delete();
-- Only what offline auth needs: not last_used_at/usage_count churn.
CREATE TRIGGER note_change AFTER INSERT OR UPDATE OF is_active, expires_at, scopes ON api_token
  FOR EACH ROW EXECUTE FUNCTION opsdb_note_change();

-- Everything already there is part of the feed's first position.
INSERT INTO change_log (table_name, row_key, site)
SELECT 'instrument', id::text, NULL FROM instrument
UNION ALL SELECT 'instrument_module', id::text, NULL FROM instrument_module
UNION ALL SELECT 'instrument_module_configuration', id::text, NULL FROM instrument_module_configuration
UNION ALL SELECT 'observing_program', id::text, NULL FROM observing_program
UNION ALL SELECT 'obs_unit', id::text, NULL FROM obs_unit
UNION ALL SELECT 'user', id::text, site_name FROM "user"
UNION ALL SELECT 'user_role', DISTINCT_USERS.user_id::text, NULL FROM (SELECT DISTINCT user_id FROM user_role) AS DISTINCT_USERS
UNION ALL SELECT 'api_token', t.id::text, u.site_name FROM api_token t JOIN "user" u ON u.id = t.user_id;
