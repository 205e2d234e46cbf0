// A typed threadstore client with Eden Treaty (@elysiajs/eden): store messages, page through
// a conversation, search it. Every request body, query and answer below is checked by the
// TypeScript compiler against the server's own schemas.
//
// Run it against a server with a tenant key (see "Quick start" in README.md):
//
//   THREADSTORE_URL=http://localhost:3000 THREADSTORE_API_KEY=ts_... bun examples/typed-client.ts
//
// In an application: `npm install @elysiajs/eden elysia` and import `App` from threadstore's
// src/client.ts, which exports only types (no server code ends up in your bundle).
import { treaty } from '@elysiajs/eden';
import type { App, ErrorBody } from '../src/client';

const api = treaty<App>(process.env.THREADSTORE_URL ?? 'http://localhost:3000', {
  headers: { authorization: `Bearer ${process.env.THREADSTORE_API_KEY}` },
  // Keep timestamps (and content that looks like one) as the strings the API sends; by
  // default Eden turns every date-like string in a response into a Date.
  parseDate: false,
});

/** Eden returns `{ data, error }`; an error's `value` is the API's one error body. */
function fail(what: string, error: { status: unknown; value: ErrorBody }): never {
  const { code, message, request_id } = error.value.error;
  throw new Error(`${what}: ${error.status} ${code}: ${message} (request ${request_id})`);
}

const conversationId = `example-${Date.now()}`;

// One message.
const first = await api.v1.messages.post({
  conversation_id: conversationId,
  role: 'user',
  content: 'My invoice from March was charged twice.',
  metadata: { channel: 'web' },
});
if (first.error) fail('store a message', first.error);
console.log('stored', first.data.id, 'at', first.data.created_at);

// A batch: all or nothing, answered in the order sent.
const batch = await api.v1.messages.batch.post({
  messages: [
    { conversation_id: conversationId, role: 'assistant', content: 'Sorry about that.' },
    { conversation_id: conversationId, role: 'assistant', content: 'I have refunded one charge.' },
    { conversation_id: conversationId, role: 'user', content: 'Thanks, the refund arrived.' },
  ],
});
if (batch.error) fail('store a batch', batch.error);
console.log('stored', batch.data.messages.length, 'more');

// Page through the conversation, oldest first, two at a time: pass next_cursor back as
// cursor until it is null.
let cursor: string | undefined;
do {
  const page = await api.v1.messages.get({
    query: { conversation_id: conversationId, limit: 2, cursor },
  });
  if (page.error) fail('list messages', page.error);
  for (const m of page.data.messages) console.log(`  ${m.role}: ${m.content}`);
  cursor = page.data.next_cursor ?? undefined;
} while (cursor);

// Full-text search within the conversation.
const found = await api.v1.search.post({
  query: 'refund',
  mode: 'fulltext',
  conversation_id: conversationId,
  limit: 5,
});
if (found.error) fail('search', found.error);
for (const { message, score } of found.data.results) {
  console.log(`  ${score.toFixed(3)} ${message.content}`);
}

// Errors come back in `error`, never thrown: an unknown id is 404 `not_found`.
const missing = await api.v1.messages({ id: '00000000-0000-7000-8000-000000000000' }).get();
if (missing.error) console.log('unknown id:', missing.error.status, missing.error.value.error.code);
