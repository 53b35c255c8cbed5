-- Deletes reach the edges. The change feed of 002 noted inserts and updates
-- only, so a row deleted at central stayed in every edge's replica. These
-- AFTER DELETE row triggers note the deleted row's key in change_log as the
-- insert/update trigger notes a written one (same table_name, row_key and
-- site), from OLD's values. readChanges then finds no row for the key and
-- sends it as {table, key, row: null}.
--
-- Where the site is looked up in another row (a package's or file's
-- observation, a token's user) and that row is gone too, the site is NULL:
-- every site may see the key (a key with row null, nothing else).

CREATE FUNCTION opsdb_note_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  k text;
  s text;
BEGIN
  CASE TG_TABLE_NAME
    WHEN 'executed_obs_unit' THEN k := OLD.id::text; s := OLD.site;
    WHEN 'raw_data_package' THEN
      k := OLD.id::text; SELECT site INTO s FROM executed_obs_unit WHERE id = OLD.executed_obs_unit_id;
    WHEN 'raw_data_file' THEN
      k := OLD.id::text; SELECT site INTO s FROM executed_obs_unit WHERE id = OLD.executed_obs_unit_id;
    WHEN 'user_preference' THEN k := OLD.user_id::text; s := NULL;
    WHEN 'user' THEN k := OLD.id::text; s := OLD.site_name;
    WHEN 'api_token' THEN
      k := OLD.id::text; SELECT site_name INTO s FROM "user" WHERE id = OLD.user_id;
    ELSE k := OLD.id::text; s := NULL;
  END CASE;
  INSERT INTO change_log (table_name, row_key, site) VALUES (TG_TABLE_NAME, k, s);
  RETURN NULL;
END $$;

-- A role taken away: the edge re-reads the user's roles (002). Its user deleted too (the roles go with
-- it, ON DELETE CASCADE): still noted, visible to every site, so the edge drops that user's roles.
CREATE OR REPLACE FUNCTION opsdb_note_role_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO change_log (table_name, row_key, site)
  VALUES ('user_role', OLD.user_id::text, (SELECT site_name FROM "user" WHERE id = OLD.user_id));
  RETURN NULL;
END $$;

CREATE TRIGGER note_delete AFTER DELETE ON instrument FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
CREATE TRIGGER note_delete AFTER DELETE ON instrument_module FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
CREATE TRIGGER note_delete AFTER DELETE ON instrument_module_configuration FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
CREATE TRIGGER note_delete AFTER DELETE ON observing_program FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
CREATE TRIGGER note_delete AFTER DELETE ON obs_unit FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
CREATE TRIGGER note_delete AFTER DELETE ON executed_obs_unit FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
CREATE TRIGGER note_delete AFTER DELETE ON raw_data_package FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
CREATE TRIGGER note_delete AFTER DELETE ON raw_data_file FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
CREATE TRIGGER note_delete AFTER DELETE ON user_preference FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
CREATE TRIGGER note_delete AFTER DELETE ON "user" FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
CREATE TRIGGER note_delete AFTER DELETE ON api_token FOR EACH ROW EXECUTE FUNCTION opsdb_note_delete();
-- user_role: its delete trigger (note_role_delete, 002) already exists; its function is replaced above.
