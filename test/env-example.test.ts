import { expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configKeys } from '../src/config';

test('.env.example mirrors the configuration schema key for key, each with a comment', () => {
  const text = readFileSync(join(import.meta.dir, '..', '.env.example'), 'utf8');
  const lines = text.split('\n');
  const documented: string[] = [];
  lines.forEach((line, i) => {
    const m = /^#?\s?([A-Z][A-Z0-9_]+)=/.exec(line);
    if (!m) return;
    documented.push(m[1]!);
    // The line before a variable (or before its commented-out form) explains it.
    expect(lines[i - 1]?.startsWith('#')).toBe(true);
  });
  expect([...documented].sort()).toEqual([...configKeys()].sort());
});
