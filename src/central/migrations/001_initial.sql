-- Central schema: accounts and tokens, reference data, observations and their
-- raw data, transfers, and the inbox that makes applied transactions exactly-once.
-- Constraints live here, not only in code.

CREATE TABLE site (
  id               serial PRIMARY KEY,
  name             text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  description      text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  last_contact_at  timestamptz,
  last_applied_seq bigint NOT NULL DEFAULT 0,
  reported_backlog jsonb
);

CREATE TABLE "user" (
  id         serial PRIMARY KEY,
  username   text NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 100),
  email      text,
  full_name  text,
  is_active  boolean NOT NULL DEFAULT true,
  site_name  text REFERENCES site (name) ON UPDATE CASCADE ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role (
  id          serial PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  description text NOT NULL
);
INSERT INTO role (name, description) VALUES
  ('admin', 'everything'),
  ('observer', 'write observations, files and packages; read'),
  ('viewer', 'read'),
  ('service', 'automation: as observer'),
  ('site', 'an edge daemon: sync endpoints for its own site only');

CREATE TABLE user_role (
  user_id integer NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
  role_id integer NOT NULL REFERENCES role (id) ON DELETE RESTRICT,
  PRIMARY KEY (user_id, role_id)
);

CREATE TABLE api_token (
  id           serial PRIMARY KEY,
  user_id      integer NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  token_hash   char(64) NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  prefix       text NOT NULL,
  scopes       text[] NOT NULL DEFAULT '{}',
  expires_at   timestamptz,
  last_used_at timestamptz,
  usage_count  bigint NOT NULL DEFAULT 0,
  is_active    boolean NOT NULL DEFAULT true,
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz
);
CREATE INDEX api_token_user ON api_token (user_id);

CREATE TABLE user_preference (
  user_id     integer PRIMARY KEY REFERENCES "user" (id) ON DELETE CASCADE,
  preferences jsonb NOT NULL CHECK (jsonb_typeof(preferences) = 'object'),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE instrument (
  id          serial PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  description text,
  is_active   boolean NOT NULL DEFAULT true
);

CREATE TABLE instrument_module (
  id            serial PRIMARY KEY,
  instrument_id integer NOT NULL REFERENCES instrument (id) ON DELETE RESTRICT,
  name          text NOT NULL,
  description   text,
  UNIQUE (instrument_id, name)
);

CREATE TABLE instrument_module_configuration (
  id                   serial PRIMARY KEY,
  instrument_module_id integer NOT NULL REFERENCES instrument_module (id) ON DELETE RESTRICT,
  name                 text NOT NULL,
  description          text,
  parameters           jsonb NOT NULL DEFAULT '{}',
  UNIQUE (instrument_module_id, name)
);

CREATE TABLE observing_program (
  id          serial PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  description text,
  is_active   boolean NOT NULL DEFAULT true
);

CREATE TABLE obs_unit (
  id                                 serial PRIMARY KEY,
  name                               text NOT NULL,
  observing_program_id               integer NOT NULL REFERENCES observing_program (id) ON DELETE RESTRICT,
  instrument_module_configuration_id integer REFERENCES instrument_module_configuration (id) ON DELETE RESTRICT,
  description                        text,
  is_active                          boolean NOT NULL DEFAULT true,
  UNIQUE (observing_program_id, name)
);

CREATE TABLE executed_obs_unit (
  id                                 uuid PRIMARY KEY,
  obs_unit_id                        integer NOT NULL REFERENCES obs_unit (id) ON DELETE RESTRICT,
  site                               text NOT NULL,
  status                             text NOT NULL
    CHECK (status IN ('running', 'success', 'failed', 'aborted', 'interrupted')),
  start_time                         timestamptz NOT NULL,
  end_time                           timestamptz,
  mean_pwv                           double precision CHECK (mean_pwv >= 0),
  mean_elevation                     double precision CHECK (mean_elevation BETWEEN -90 AND 90),
  instrument_module_configuration_id integer REFERENCES instrument_module_configuration (id) ON DELETE RESTRICT,
  created_at                         timestamptz NOT NULL DEFAULT now(),
  updated_at                         timestamptz NOT NULL DEFAULT now(),
  CHECK (end_time IS NULL OR end_time >= start_time)
);
CREATE INDEX executed_obs_unit_start ON executed_obs_unit (start_time DESC, id DESC);
CREATE INDEX executed_obs_unit_obs_unit ON executed_obs_unit (obs_unit_id);

CREATE TABLE raw_data_package (
  id                   uuid PRIMARY KEY,
  name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  executed_obs_unit_id uuid NOT NULL REFERENCES executed_obs_unit (id) ON DELETE RESTRICT,
  state                text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'finalized')),
  size                 bigint CHECK (size >= 0),
  checksum             text,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX raw_data_package_obs ON raw_data_package (executed_obs_unit_id);

CREATE TABLE raw_data_file (
  id                   uuid PRIMARY KEY,
  name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  path                 text NOT NULL,
  size                 bigint NOT NULL CHECK (size >= 0),
  checksum             text NOT NULL,
  file_type            text NOT NULL,
  executed_obs_unit_id uuid NOT NULL REFERENCES executed_obs_unit (id) ON DELETE RESTRICT,
  raw_data_package_id  uuid REFERENCES raw_data_package (id) ON DELETE RESTRICT,
  created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX raw_data_file_obs ON raw_data_file (executed_obs_unit_id);
CREATE INDEX raw_data_file_pkg ON raw_data_file (raw_data_package_id);

CREATE TABLE data_transfer (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  raw_data_package_id uuid NOT NULL REFERENCES raw_data_package (id) ON DELETE RESTRICT,
  source              text NOT NULL,
  destination         text NOT NULL,
  status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'completed', 'failed')),
  bytes_transferred   bigint NOT NULL DEFAULT 0 CHECK (bytes_transferred >= 0),
  started_at          timestamptz,
  finished_at         timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX data_transfer_status ON data_transfer (status);

-- Every transaction applied here, from an edge or from a direct write.
-- The unique key is what makes a re-sent transaction a no-op.
CREATE TABLE applied_transaction (
  site           text NOT NULL,
  transaction_id uuid NOT NULL,
  seq            bigint,
  endpoint       text NOT NULL,
  payload_hash   char(64) NOT NULL,
  created_at     timestamptz NOT NULL,
  applied_at     timestamptz NOT NULL DEFAULT now(),
  applied_by     integer REFERENCES "user" (id) ON DELETE SET NULL,
  PRIMARY KEY (site, transaction_id)
);
CREATE UNIQUE INDEX applied_transaction_site_seq ON applied_transaction (site, seq) WHERE seq IS NOT NULL;
CREATE INDEX applied_transaction_id ON applied_transaction (transaction_id);
