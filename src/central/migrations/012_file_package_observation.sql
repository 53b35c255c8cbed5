-- A raw data file's package must be a package of the file's own observation.
-- raw_data_file refers to its observation and, optionally, to a package, and a
-- package belongs to one observation; nothing tied the two together, so a
-- file could be put in another observation's package (at central and at the
-- edges alike), and that package then listed a file of another observation.
--
-- The pair (raw_data_package_id, executed_obs_unit_id) must now be a package
-- and its observation. A file without a package (NULL) is not checked. The
-- foreign key from 001 on raw_data_package_id alone stays, and is checked
-- first (constraints' triggers fire in the order they were made), so a package
-- that does not exist is still reported as such.
--
-- NOT VALID: rows already stored are not checked (a database that holds such
-- a file still migrates); docs/central.md shows how to find them and then
-- VALIDATE the constraint.

ALTER TABLE raw_data_package ADD CONSTRAINT raw_data_package_id_observation UNIQUE (id, executed_obs_unit_id);
ALTER TABLE raw_data_file ADD CONSTRAINT raw_data_file_package_observation
  FOREIGN KEY (raw_data_package_id, executed_obs_unit_id) REFERENCES raw_data_package (id, executed_obs_unit_id)
  ON DELETE RESTRICT NOT VALID;
