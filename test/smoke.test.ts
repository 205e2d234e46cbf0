import { expect, test } from 'bun:test';
import { sharedApp } from './support/app';

test('smoke', async () => {
  const t = await sharedApp();
  const ten = await t.tenant();
  const r = await t.call('POST', '/v1/messages', {
    key: ten.api_key,
    body: { conversation_id: 'c1', role: 'user', content: 'hi' },
  });
  console.log(r.status, r.json);
  const l = await t.call('GET', '/v1/messages?conversation_id=c1', { key: ten.api_key });
  console.log(l.status, JSON.stringify(l.json));
  const c = await t.call('GET', '/v1/conversations', { key: ten.api_key });
  console.log(c.status, JSON.stringify(c.json));
  const bad = await t.call('POST', '/v1/messages', {
    key: ten.api_key,
    body: { conversation_id: 'c1', role: 'user', content: 'hi', metadata: 's' },
  });
  console.log(bad.status, JSON.stringify(bad.json));
  console.log(t.logs.raw.slice(-3));
  expect(r.status).toBe(201);
});
