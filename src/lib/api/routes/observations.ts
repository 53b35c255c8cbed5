import * as S from '../schemas.js';
import { BUFFERED_WRITE_ERRORS, route, type ApiContext } from '../route.js';
import { READ_ROLES, WRITE_ROLES } from '../../auth.js';
import { AppError, ForbiddenError, NotFoundError } from '../../errors.js';
import { createStep, newDraft, newRowId, updateStep, type Step } from '../transaction.js';

/** Keys whose value is undefined are left out, so an update only names what the client sent. */
const defined = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

/**
 * A finish's end_time when the client sends none: now, or the observation's start_time if that is
 * later. The clock may have been stepped back (NTP at a site that ran without it) since the start,
 * and a finish the client did not time must not be refused for it.
 */
async function endTimeNow(backend: ApiContext['backend'], id: string): Promise<string> {
  const now = new Date();
  const start = await backend.startTimeOf(id);
  return start && Date.parse(start) > now.getTime() ? new Date(Date.parse(start)).toISOString() : now.toISOString();
}

export function observationRoutes(api: ApiContext): void {
  const { backend } = api;
  const submit = (endpoint: string, steps: Step[], principal: Parameters<typeof backend.submit>[1]) =>
    backend.submit(newDraft(backend.siteName, endpoint, steps), principal);

  route(api, {
    method: 'post', hot: true, path: '/executed_obs_units/start', tag: 'observations', roles: WRITE_ROLES,
    body: S.StartObservation, status: 201, response: S.WriteResult, summary: 'Start an observation',
    handler: async ({ body, principal }) => {
      const id = newRowId();
      const data = defined({ id, ...body, site: backend.siteName, start_time: body.start_time ?? new Date().toISOString() });
      const out = await submit('POST /executed_obs_units/start', [createStep('obs', 'executed_obs_unit', id, data)], principal);
      return { id, ...out };
    },
  });

  route(api, {
    method: 'put', hot: true, path: '/executed_obs_units/{id}/finish', tag: 'observations', roles: WRITE_ROLES,
    params: S.UuidParams, body: S.FinishObservation, status: 202, response: S.WriteResult,
    summary: 'Finish an observation (also one that has not synced yet)',
    handler: async ({ params, body, principal }) => {
      const data = defined({ ...body, end_time: body.end_time ?? (await endTimeNow(backend, params.id)) });
      const out = await submit(
        'PUT /executed_obs_units/{id}/finish',
        [updateStep('finish', 'executed_obs_unit', params.id, data)],
        principal,
      );
      return { id: params.id, ...out };
    },
  });

  route(api, {
    method: 'get', path: '/executed_obs_units/', tag: 'observations', roles: READ_ROLES,
    query: S.ExecutedObsUnitQuery, response: S.ExecutedObsUnit.array(),
    summary: 'List observations, newest first. The next page is named by the X-Next-Cursor header.',
    handler: async ({ ctx, query }) => {
      const page = await backend.listExecutedObsUnits(query);
      if (page.nextCursor) {
        ctx.set('X-Next-Cursor', page.nextCursor);
        const next = new URLSearchParams({ ...(ctx.query as Record<string, string>), cursor: page.nextCursor });
        ctx.set('Link', `<${ctx.path}?${next.toString()}>; rel="next"`);
      }
      return page.items;
    },
  });

  route(api, {
    method: 'get', path: '/executed_obs_units/{id}', tag: 'observations', roles: READ_ROLES, params: S.UuidParams,
    response: S.ExecutedObsUnitDetail, summary: 'One observation with its raw data packages and files',
    handler: async ({ params }) => {
      const o = await backend.getExecutedObsUnit(params.id);
      if (!o) throw new NotFoundError(`Executed obs unit ${params.id} not found`);
      return o;
    },
  });

  route(api, {
    method: 'post', hot: true, path: '/raw_data_files/', tag: 'files', roles: WRITE_ROLES, body: S.CreateRawDataFile,
    status: 201, response: S.WriteResult, summary: 'Register one raw data file',
    handler: async ({ body, principal }) => {
      const id = newRowId();
      const out = await submit('POST /raw_data_files/', [createStep('file', 'raw_data_file', id, defined({ id, ...body }))], principal);
      return { id, ...out };
    },
  });

  route(api, {
    method: 'post', hot: true, path: '/raw_data_files/bulk', tag: 'files', roles: WRITE_ROLES, body: S.BulkRawDataFiles,
    status: 201, response: S.BulkWriteResult, summary: 'Register many raw data files in one transaction',
    handler: async ({ body, principal }) => {
      const rows = body.files.map((f) =>
        defined({ id: newRowId(), ...f, executed_obs_unit_id: body.executed_obs_unit_id, raw_data_package_id: body.raw_data_package_id }),
      );
      const out = await submit('POST /raw_data_files/bulk', [{ step_id: 'files', op: 'bulk_create', table: 'raw_data_file', rows }], principal);
      return { count: rows.length, ...out, ids: rows.map((r) => r.id as string) };
    },
  });

  route(api, {
    method: 'get', path: '/raw_data_files/{id}', tag: 'files', roles: READ_ROLES, params: S.UuidParams,
    response: S.RawDataFile, summary: 'One raw data file',
    handler: async ({ params }) => {
      const f = await backend.getRawDataFile(params.id);
      if (!f) throw new NotFoundError(`Raw data file ${params.id} not found`);
      return f;
    },
  });

  route(api, {
    method: 'post', hot: true, path: '/raw_data_package/', tag: 'files', roles: WRITE_ROLES, body: S.CreateRawDataPackage,
    status: 201, response: S.WriteResult, summary: 'Open a raw data package',
    handler: async ({ body, principal }) => {
      const id = newRowId();
      const out = await submit('POST /raw_data_package/', [createStep('pkg', 'raw_data_package', id, { id, ...body, state: 'open' })], principal);
      return { id, ...out };
    },
  });

  route(api, {
    method: 'get', path: '/raw_data_package/{id}', tag: 'files', roles: READ_ROLES, params: S.UuidParams,
    response: S.RawDataPackageDetail, summary: 'One raw data package with its files',
    handler: async ({ params }) => {
      const p = await backend.getRawDataPackage(params.id);
      if (!p) throw new NotFoundError(`Raw data package ${params.id} not found`);
      return p;
    },
  });

  route(api, {
    method: 'put', hot: true, path: '/raw_data_package/{id}/finalize', tag: 'files', roles: WRITE_ROLES, params: S.UuidParams,
    body: S.FinalizeRawDataPackage, status: 202, response: S.WriteResult, summary: 'Finalize a package: size and checksum',
    handler: async ({ params, body, principal }) => {
      const step = updateStep('finalize', 'raw_data_package', params.id, { state: 'finalized', ...body });
      const out = await submit('PUT /raw_data_package/{id}/finalize', [step], principal);
      return { id: params.id, ...out };
    },
  });

  route(api, {
    method: 'post', hot: true, path: '/api/demo/create-observation', tag: 'demo', roles: WRITE_ROLES, body: S.CreateObservation,
    status: 201, response: S.CreateObservationResult,
    summary: 'One transaction: an observation, its package and its files (the seed tutorial)',
    handler: async ({ body, principal }) => {
      const { package_name, ...obs } = body.obs_data;
      const obsId = newRowId();
      const pkgId = newRowId();
      const finished = obs.end_time != null;
      const steps: Step[] = [
        createStep('obs', 'executed_obs_unit', obsId, defined({ id: obsId, ...obs, site: backend.siteName, status: finished ? 'success' : 'running' })),
        createStep('pkg', 'raw_data_package', pkgId, { id: pkgId, name: package_name, executed_obs_unit_id: obsId, state: 'open' }),
      ];
      const files = body.raw_files.map((f) => ({ id: newRowId(), ...f, executed_obs_unit_id: obsId, raw_data_package_id: pkgId }));
      if (files.length > 0) steps.push({ step_id: 'files', op: 'bulk_create', table: 'raw_data_file', rows: files });
      const out = await submit('POST /api/demo/create-observation', steps, principal);
      return { ...out, executed_obs_unit_id: obsId, raw_data_package_id: pkgId, raw_data_file_ids: files.map((f) => f.id) };
    },
  });

  route(api, {
    method: 'post', hot: true, path: '/api/demo/update-user-preferences', tag: 'demo', roles: READ_ROLES, body: S.UpdatePreferences,
    errors: backend.siteType === 'secondary' ? BUFFERED_WRITE_ERRORS : {},
    response: S.UpdatePreferencesResult, summary: "Store a user's preferences (your own; admin: anyone's)",
    handler: async ({ body, principal }) => {
      if (body.user_id !== principal.userId && !principal.roles.has('admin')) {
        throw new ForbiddenError('You can only update your own preferences');
      }
      // Central has no accounts with negative ids (an edge's own): said as the edge says of a user it lacks,
      // rather than by the sync schema's check on the step ("Invalid steps[0] (upsert user_preference) …").
      if (body.user_id < 0 && backend.siteType === 'main') {
        throw new AppError(422, 'reference_not_found', `user ${body.user_id} does not exist`, { step: 'prefs', table: 'user_preference' });
      }
      const step: Step = { step_id: 'prefs', op: 'upsert', table: 'user_preference', id: body.user_id, data: body };
      const out = await submit('POST /api/demo/update-user-preferences', [step], principal);
      return { status: 'success', message: 'User preferences updated', transaction_id: out.transaction_id };
    },
  });
}
