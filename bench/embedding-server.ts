// The local embeddings API in a process of its own, so the load generator's event loop never
// slows its answers. Prints its URL and API key as one JSON line, then serves until killed.
import { startEmbeddingServer } from '../harness/embedding-server';

const server = startEmbeddingServer({ dimensions: Number(process.env.DIMENSIONS ?? 64) });
console.log(JSON.stringify({ url: server.url, apiKey: server.apiKey }));
