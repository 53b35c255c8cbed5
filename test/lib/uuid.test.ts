// uuidv7 (src/lib/uuid.ts): the layout of RFC 9562 version 7, in creation order, readable by zod's uuid check.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { uuidv7, UUID_RE } from '../../src/lib/uuid.js';

it('uuidv7 ids carry the time, version 7 and variant bits, and sort in creation order', () => {
  const before = Date.now();
  const ids = Array.from({ length: 20_000 }, () => uuidv7()); // more than one pool of random bytes, many per millisecond
  const after = Date.now();
  const check = z.uuid();
  for (const id of ids) {
    assert.match(id, UUID_RE);
    assert.equal(id[14], '7', id);
    assert.match(id[19]!, /[89ab]/, id);
    assert.ok(check.safeParse(id).success, id);
    const ms = parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
    // The counter may run a few ms ahead of the clock when more than 4,096 ids are made in one ms.
    assert.ok(ms >= before && ms <= after + 5, `${id}: ${ms} not within ${before}..${after}`);
  }
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} !< ${ids[i]}`);
  assert.equal(new Set(ids.map((id) => id.slice(19))).size, ids.length, 'random parts repeat');
});
