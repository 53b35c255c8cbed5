/**
 * A standalone edge in demo mode gets the replica central's `opsdb seed`
 * would have sent it: the same reference data with the same ids (central
 * numbers them in this order), and central's `admin` as user 1.
 */
import { INSTRUMENTS, PROGRAMS } from '../central/seed.js';
import type { LocalStore } from './local-store.js';

export function seedDemoReplica(local: LocalStore): void {
  if (local.hasReferenceData()) return;
  let moduleId = 0;
  let configId = 0;
  const modules: Record<string, unknown>[] = [];
  const configs: Record<string, unknown>[] = [];
  INSTRUMENTS.forEach((inst, i) => {
    for (const m of inst.modules) {
      modules.push({ id: ++moduleId, instrument_id: i + 1, name: m.name, description: m.description });
      for (const c of m.configs) {
        configs.push({ id: ++configId, instrument_module_id: moduleId, name: c, description: `${m.name} ${c} configuration`, parameters: { mode: c } });
      }
    }
  });
  let unitId = 0;
  const units = PROGRAMS.flatMap((p, i) =>
    p.units.map((u) => ({
      id: ++unitId, name: u, observing_program_id: i + 1, instrument_module_configuration_id: 1,
      description: `Obs unit ${u} of ${p.name}`, is_active: true,
    })),
  );
  local.upsertReference('instrument', INSTRUMENTS.map((x, i) => ({ id: i + 1, name: x.name, description: x.description, is_active: true })));
  local.upsertReference('instrument_module', modules);
  local.upsertReference('instrument_module_configuration', configs);
  local.upsertReference('observing_program', PROGRAMS.map((p, i) => ({ id: i + 1, name: p.name, description: p.description, is_active: true })));
  local.upsertReference('obs_unit', units);
  local.db
    .prepare(`INSERT OR IGNORE INTO user (id, username, email, full_name, created_at) VALUES (1, 'admin', 'admin@example.com', 'Admin User', ?)`)
    .run(new Date().toISOString());
  local.db.prepare(`INSERT OR IGNORE INTO user_role (user_id, role) VALUES (1, 'admin')`).run();
}
