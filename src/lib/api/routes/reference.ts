import * as S from '../schemas.js';
import { route, type ApiContext } from '../route.js';
import { READ_ROLES } from '../../auth.js';
import { NotFoundError } from '../../errors.js';

export function referenceRoutes(api: ApiContext): void {
  const { backend } = api;
  route(api, {
    method: 'get', path: '/instruments/', tag: 'reference', roles: READ_ROLES, response: S.Instrument.array(),
    summary: 'Instruments', handler: () => backend.listInstruments(),
  });
  route(api, {
    method: 'get', path: '/instruments/{id}', tag: 'reference', roles: READ_ROLES, params: S.IntIdParams,
    response: S.InstrumentDetail, summary: 'One instrument with its modules and configurations',
    handler: async ({ params }) => {
      const i = await backend.getInstrument(params.id);
      if (!i) throw new NotFoundError(`Instrument ${params.id} not found`);
      return i;
    },
  });
  route(api, {
    method: 'get', path: '/observing_programs/', tag: 'reference', roles: READ_ROLES,
    response: S.ObservingProgram.array(), summary: 'Observing programs',
    handler: () => backend.listObservingPrograms(),
  });
  route(api, {
    method: 'get', path: '/obs_units/', tag: 'reference', roles: READ_ROLES, query: S.ObsUnitQuery,
    response: S.ObsUnit.array(), summary: 'Observation units', handler: ({ query }) => backend.listObsUnits(query),
  });
  route(api, {
    method: 'get', path: '/api/transfer/overview', tag: 'transfer', roles: READ_ROLES, response: S.TransferOverview,
    summary: 'Counts of raw data packages and their transfers', handler: () => backend.transferOverview(),
  });
}
