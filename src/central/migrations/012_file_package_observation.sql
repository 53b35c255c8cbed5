-- A raw data file's package must be a package of the file's own observation.
-- raw_data_file refers to its observation and, optionally, to a package, and a
-- package belongs to one observation; nothing tied the two together, so a
-- file could be put in another observation's package (at central and at the
-- edges alike), and that package then listed a file of another observation.
--
-- A BEFORE trigger, not a foreign key on the pair: foreign keys are checked by
-- triggers that fire in the order of their names, which carry OIDs, so which
-- of two failing keys reports first would depend on the cluster's OID counter;
-- and adding one would lock raw_data_package as well, in an order a write in
-- progress can deadlock with. This trigger fires before every foreign key and
-- speaks only when the package exists and belongs to another observation; a
-- package that does not exist is left to raw_data_file's own foreign key (422
-- reference_not_found). A package's observation never changes (no update
-- touches it), so checking when the file is written is enough.
--
-- The error is a check_violation naming the rule as its constraint, which the
-- apply functions report and central maps to the same 422 as the edge's.
-- Rows already stored are not checked: docs/central.md shows how to find them.

CREATE FUNCTION opsdb_file_package_observation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  owner uuid;
BEGIN
  IF NEW.raw_data_package_id IS NOT NULL THEN
    SELECT executed_obs_unit_id INTO owner FROM raw_data_package WHERE id = NEW.raw_data_package_id;
    IF FOUND AND owner <> NEW.executed_obs_unit_id THEN
      RAISE EXCEPTION 'raw_data_package % is not a package of executed_obs_unit %', NEW.raw_data_package_id, NEW.executed_obs_unit_id
        USING ERRCODE = 'check_violation', CONSTRAINT = 'raw_data_file_package_observation', TABLE = 'raw_data_file',
              DETAIL = format('Key (raw_data_package_id, executed_obs_unit_id)=(%s, %s): the package belongs to executed_obs_unit %s',
                              NEW.raw_data_package_id, NEW.executed_obs_unit_id, owner);
    END IF;
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER raw_data_file_package_observation
  BEFORE INSERT OR UPDATE OF raw_data_package_id, executed_obs_unit_id ON raw_data_file
  FOR EACH ROW EXECUTE FUNCTION opsdb_file_package_observation();
