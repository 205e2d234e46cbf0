import { describe, expect, test } from 'bun:test';
import { parseArgs, UsageError } from '../src/cli';
import { ConfigError, loadConfig } from '../src/config';

describe('configuration', () => {
  test('applies defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      PORT: 3000,
      HOST: '0.0.0.0',
      DB_POOL_MAX: 10,
      DATA_DIR: './data',
      MIGRATE_ON_START: true,
      LOG_LEVEL: 'info',
      MAX_BODY_BYTES: 4 * 1024 * 1024,
      MAX_CONTENT_CHARS: 32_000,
    });
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.adminKeyGenerated).toBe(true);
    expect(c.ADMIN_API_KEY.length).toBeGreaterThan(32);
  });

  test('coerces numbers and booleans from strings', () => {
    const c = loadConfig({ PORT: '8080', MIGRATE_ON_START: 'false', DB_POOL_MAX: '25' });
    expect(c.PORT).toBe(8080);
    expect(c.MIGRATE_ON_START).toBe(false);
    expect(c.DB_POOL_MAX).toBe(25);
  });

  test('lists every bad variable in one message', () => {
    let error: unknown;
    try {
      loadConfig({
        PORT: 'abc',
        LOG_LEVEL: 'loud',
        DATABASE_URL: 'mysql://x',
        MIGRATE_ON_START: 'maybe',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    for (const name of ['PORT', 'LOG_LEVEL', 'DATABASE_URL', 'MIGRATE_ON_START']) {
      expect(message).toContain(name);
    }
  });

  test('production refuses to start without ADMIN_API_KEY', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/ADMIN_API_KEY/);
    const c = loadConfig({ NODE_ENV: 'production', ADMIN_API_KEY: 'a-long-enough-admin-key' });
    expect(c.adminKeyGenerated).toBe(false);
  });

  test('derives a stable cursor secret from the admin key when none is set', () => {
    const a = loadConfig({ ADMIN_API_KEY: 'a-long-enough-admin-key' });
    const b = loadConfig({ ADMIN_API_KEY: 'a-long-enough-admin-key' });
    expect(a.CURSOR_SECRET).toBe(b.CURSOR_SECRET);
    expect(a.CURSOR_SECRET).not.toContain('a-long-enough-admin-key');
  });
});

describe('command line', () => {
  test('parses the known commands', () => {
    expect(parseArgs([])).toEqual({ kind: 'serve' });
    expect(parseArgs(['serve'])).toEqual({ kind: 'serve' });
    expect(parseArgs(['migrate'])).toEqual({ kind: 'migrate' });
    expect(parseArgs(['--version'])).toEqual({ kind: 'version' });
    expect(parseArgs(['--help'])).toEqual({ kind: 'help' });
    expect(parseArgs(['healthcheck'])).toEqual({ kind: 'healthcheck', probe: 'livez' });
    expect(parseArgs(['embeddings', 'reindex'])).toEqual({ kind: 'reindex-embeddings' });
  });

  test('refuses unknown commands and flags', () => {
    for (const args of [
      ['bogus'],
      ['--nope'],
      ['serve', 'extra'],
      ['embeddings'],
      ['embeddings', 'x'],
    ]) {
      expect(() => parseArgs(args)).toThrow(UsageError);
    }
  });
});
