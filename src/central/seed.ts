/**
 * Demo reference data (SPEC §7): instruments with modules and configurations,
 * observing programs and obs units. Idempotent; on a fresh database the first
 * of each gets id 1, so the seed tutorial's calls work as written.
 */
import type { Pool } from './db.js';
import { withTransaction } from './db.js';

export const INSTRUMENTS = [
  {
    name: 'Prime-Cam',
    description: 'Prime-Cam instrument: broadband and spectroscopic camera for CCAT-prime',
    modules: [
      { name: '280 GHz', description: 'Broadband polarimetric module at 280 GHz', configs: ['default', 'polarimetry'] },
      { name: '350 GHz', description: 'Broadband module at 350 GHz', configs: ['default'] },
      { name: 'EoR-Spec', description: 'Fabry-Perot imaging spectrometer, 210-420 GHz', configs: ['default', 'wide-scan'] },
    ],
  },
  {
    name: 'CHAI',
    description: 'CCAT Heterodyne Array Instrument',
    modules: [
      { name: 'LFA', description: 'Low-frequency array, 455-495 GHz', configs: ['default', 'CI 1-0'] },
      { name: 'HFA', description: 'High-frequency array, 800-820 GHz', configs: ['default', 'CI 2-1'] },
    ],
  },
];

export const PROGRAMS = [
  { name: 'Demo program', description: 'Reference program for trials and the tutorial', units: ['demo-obs-unit', 'demo-calibration'] },
  { name: 'EoR deep field', description: 'Line-intensity mapping of the epoch of reionization', units: ['eor-field-1', 'eor-field-2'] },
  { name: 'Galactic CI survey', description: 'Atomic carbon in the Milky Way', units: ['gal-plane-l30'] },
];

/**
 * Every INSERT here is `… SELECT … WHERE NOT EXISTS` (and, for a seed
 * running at the same time, ON CONFLICT DO NOTHING): an INSERT that meets
 * its conflict still takes a number from the id sequence, so running seed
 * again would shift the ids of whatever is made next (a user made after a
 * second seed got id 3, not the tutorial's 2). `added`: rows this run made.
 */
export async function seed(pool: Pool): Promise<{ instruments: number; obs_units: number; added: number }> {
  return withTransaction(pool, async (c) => {
    let added = 0;
    const run = async (sql: string, params: unknown[] = []) => {
      const r = await c.query(sql, params);
      added += r.rowCount ?? 0;
      return r;
    };
    // The admin account first, so on a fresh database it is user 1 as in the tutorial.
    const admin = await run(
      `INSERT INTO "user" (username, email, full_name) SELECT 'admin', 'admin@example.com', 'Admin User'
       WHERE NOT EXISTS (SELECT 1 FROM "user" WHERE username = 'admin') ON CONFLICT DO NOTHING RETURNING id`,
    );
    if (admin.rowCount) {
      await c.query(`INSERT INTO user_role (user_id, role_id) SELECT $1, id FROM role WHERE name = 'admin'`, [admin.rows[0].id]);
    }
    for (const inst of INSTRUMENTS) {
      await run('INSERT INTO instrument (name, description) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM instrument WHERE name = $1) ON CONFLICT DO NOTHING', [
        inst.name,
        inst.description,
      ]);
      for (const mod of inst.modules) {
        await run(
          `INSERT INTO instrument_module (instrument_id, name, description)
           SELECT i.id, $2, $3 FROM instrument i WHERE i.name = $1
              AND NOT EXISTS (SELECT 1 FROM instrument_module m WHERE m.instrument_id = i.id AND m.name = $2) ON CONFLICT DO NOTHING`,
          [inst.name, mod.name, mod.description],
        );
        for (const cfg of mod.configs) {
          await run(
            `INSERT INTO instrument_module_configuration (instrument_module_id, name, description, parameters)
             SELECT m.id, $3, $4, $5 FROM instrument_module m JOIN instrument i ON i.id = m.instrument_id
              WHERE i.name = $1 AND m.name = $2
                AND NOT EXISTS (SELECT 1 FROM instrument_module_configuration x WHERE x.instrument_module_id = m.id AND x.name = $3) ON CONFLICT DO NOTHING`,
            [inst.name, mod.name, cfg, `${mod.name} ${cfg} configuration`, { mode: cfg }],
          );
        }
      }
    }
    for (const p of PROGRAMS) {
      await run('INSERT INTO observing_program (name, description) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM observing_program WHERE name = $1) ON CONFLICT DO NOTHING', [
        p.name,
        p.description,
      ]);
      for (const u of p.units) {
        await run(
          `INSERT INTO obs_unit (name, observing_program_id, instrument_module_configuration_id, description)
           SELECT $2, p.id, (SELECT min(id) FROM instrument_module_configuration), $3
             FROM observing_program p WHERE p.name = $1
              AND NOT EXISTS (SELECT 1 FROM obs_unit u WHERE u.observing_program_id = p.id AND u.name = $2) ON CONFLICT DO NOTHING`,
          [p.name, u, `Obs unit ${u} of ${p.name}`],
        );
      }
    }
    const { rows } = await c.query(
      'SELECT (SELECT count(*) FROM instrument)::int AS instruments, (SELECT count(*) FROM obs_unit)::int AS obs_units',
    );
    return { ...rows[0], added };
  });
}
