import { describe, expect, test } from 'bun:test';
import { treaty } from '@elysiajs/eden';
import type { App, Message } from '../src/client';
import { ADMIN_KEY, sharedApp } from './support/app';

const t = await sharedApp();

/**
 * Eden Treaty over the app in process (it calls app.handle, no network). `parseDate: false`
 * keeps timestamps, and content that happens to look like one, as the strings the API sends.
 */
const clientFor = (key?: string) =>
  treaty<App>(t.app, {
    headers: key ? { authorization: `Bearer ${key}` } : {},
    parseDate: false,
  });

const admin = clientFor(ADMIN_KEY);

/** A fresh tenant, created through the typed client's admin routes; answers its own client. */
async function tenantClient() {
  const { data, error } = await admin.v1.admin.tenants.post({ name: 'typed client' });
  if (error) throw new Error(`tenant creation failed: ${error.status}`);
  return clientFor(data.api_key);
}

describe('the typed client', () => {
  test('creates a message and reads it back by id, with typed data', async () => {
    const api = await tenantClient();
    const created = await api.v1.messages.post({
      conversation_id: 'typed-1',
      role: 'user',
      // Looks like a timestamp: Eden's default date parsing would turn it into a Date.
      content: '2026-01-02T03:04:05Z',
      metadata: { source: 'eden' },
    });
    expect(created.error).toBeNull();
    expect(created.status).toBe(201);
    const message: Message = created.data!;
    expect(message).toMatchObject({
      conversation_id: 'typed-1',
      role: 'user',
      content: '2026-01-02T03:04:05Z',
      metadata: { source: 'eden' },
    });
    expect(typeof message.created_at).toBe('string');

    const got = await api.v1.messages({ id: message.id }).get();
    expect(got.status).toBe(200);
    expect(got.data).toEqual(message);
  });

  test('pages through a conversation of 7 messages 3 at a time, in order, with no repeats', async () => {
    const api = await tenantClient();
    const batch = await api.v1.messages.batch.post({
      messages: Array.from({ length: 7 }, (_, i) => ({
        conversation_id: 'typed-paging',
        role: i % 2 === 0 ? ('user' as const) : ('assistant' as const),
        content: `message ${i}`,
      })),
    });
    expect(batch.status).toBe(201);
    const sent = batch.data!.messages.map((m) => m.id);
    expect(sent).toHaveLength(7);

    const seen: string[] = [];
    const pageSizes: number[] = [];
    let cursor: string | undefined;
    do {
      const { data, error } = await api.v1.messages.get({
        query: { conversation_id: 'typed-paging', limit: 3, cursor },
      });
      if (error) throw new Error(`listing failed: ${error.value.error.code}`);
      pageSizes.push(data.messages.length);
      seen.push(...data.messages.map((m) => m.id));
      cursor = data.next_cursor ?? undefined;
    } while (cursor);

    expect(pageSizes).toEqual([3, 3, 1]);
    expect(seen).toEqual(sent);
    expect(new Set(seen).size).toBe(7);
  });

  test('searches full-text', async () => {
    const api = await tenantClient();
    await api.v1.messages.batch.post({
      messages: [
        { conversation_id: 'typed-search', role: 'user', content: 'The invoice is overdue' },
        { conversation_id: 'typed-search', role: 'assistant', content: 'I will check the weather' },
      ],
    });
    const { data, error } = await api.v1.search.post({ query: 'invoice', mode: 'fulltext' });
    expect(error).toBeNull();
    expect(data!.mode).toBe('fulltext');
    expect(data!.results.map((r) => r.message.content)).toEqual(['The invoice is overdue']);
    expect(data!.results[0]!.matched).toEqual(['fulltext']);
  });

  test('answers a body of the wrong type with 422 validation_failed in error', async () => {
    const api = await tenantClient();
    const res = await api.v1.messages.post({
      // @ts-expect-error conversation_id is a string: the client's body type rejects a number.
      conversation_id: 42,
      role: 'user',
      content: 'hello',
    });
    expect(res.data).toBeNull();
    expect(res.error?.status).toBe(422);
    expect(res.error?.value.error.code).toBe('validation_failed');
  });

  test('answers a request without a key with 401 unauthorized in error', async () => {
    const anonymous = clientFor();
    const res = await anonymous.v1.messages.get({ query: {} });
    expect(res.data).toBeNull();
    expect(res.error?.status).toBe(401);
    expect(res.error?.value.error.code).toBe('unauthorized');
    expect(res.response.headers.get('www-authenticate')).toBe('Bearer');
  });

  test("keeps tenants apart: another tenant's message id is 404, and it is neither listed nor found", async () => {
    const owner = await tenantClient();
    const other = await tenantClient();
    const { data: mine } = await owner.v1.messages.post({
      conversation_id: 'typed-private',
      role: 'user',
      content: 'confidential quarterly numbers',
    });
    const id = mine!.id;

    const got = await other.v1.messages({ id }).get();
    expect(got.error?.status).toBe(404);
    expect(got.error?.value.error.code).toBe('not_found');

    const listed = await other.v1.messages.get({ query: { conversation_id: 'typed-private' } });
    expect(listed.data!.messages).toEqual([]);

    const found = await other.v1.search.post({ query: 'confidential', mode: 'fulltext' });
    expect(found.data!.results).toEqual([]);

    const removed = await other.v1.messages({ id }).delete();
    expect(removed.error?.status).toBe(404);
    expect((await owner.v1.messages({ id }).get()).status).toBe(200);
  });
});
