// Drives the Ignis server at IGNIS_FHIR_BASE with fhir-kit-client as an application would:
// read, search with paging, create, conditional create, PATCH, history and a transaction.
// Exits non-zero on the first failed expectation.
import assert from 'node:assert/strict';
import { Client } from 'fhir-kit-client';

const baseUrl = process.env.IGNIS_FHIR_BASE;
assert.ok(baseUrl, 'IGNIS_FHIR_BASE names the FHIR base');
const client = new Client({ baseUrl });

const metadata = await client.capabilityStatement();
assert.equal(metadata.resourceType, 'CapabilityStatement');

const family = `Kit${Date.now()}`;
for (let index = 0; index < 25; index += 1) {
  await client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', name: [{ family, given: [`P${index}`] }] } });
}
let page = await client.search({ resourceType: 'Patient', searchParams: { family, _count: 10 } });
let seen = page.entry.length;
while (client.nextPage({ bundle: page })) {
  page = await client.nextPage({ bundle: page });
  seen += page.entry?.length ?? 0;
}
assert.equal(seen, 25, 'paging through next links finds every match once');

const created = await client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', identifier: [{ system: 'urn:kit', value: family }] } });
const read = await client.read({ resourceType: 'Patient', id: created.id });
assert.equal(read.id, created.id);
const conditional = await client.create({
  resourceType: 'Patient',
  body: { resourceType: 'Patient', identifier: [{ system: 'urn:kit', value: family }] },
  options: { headers: { 'If-None-Exist': `identifier=urn:kit|${family}` } },
});
assert.equal(conditional.id, created.id, 'a conditional create finds the match');

const patched = await client.patch({
  resourceType: 'Patient',
  id: created.id,
  jsonPatch: [{ op: 'add', path: '/active', value: true }],
});
assert.equal(patched.active, true);
const history = await client.resourceHistory({ resourceType: 'Patient', id: created.id });
assert.equal(history.type, 'history');
assert.equal(history.entry.length, 2, 'the create and the patch');

const response = await client.transaction({
  body: {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:0d0e0f10-1112-4314-9516-171819202122', resource: { resourceType: 'Patient', name: [{ family }] }, request: { method: 'POST', url: 'Patient' } },
      {
        resource: { resourceType: 'Observation', status: 'final', code: { text: 'kit' }, subject: { reference: 'urn:uuid:0d0e0f10-1112-4314-9516-171819202122' } },
        request: { method: 'POST', url: 'Observation' },
      },
    ],
  },
});
assert.equal(response.type, 'transaction-response');
assert.ok(response.entry.every((entry) => entry.response.status.startsWith('201')), JSON.stringify(response.entry));
console.log('fhir-kit-client: read, search with paging, create, conditional create, patch, history and transaction all worked');
