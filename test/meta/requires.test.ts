// requireOrSkip(): a loud skip locally, a failure under CI=true. The last tests run a real test
// file in a child `bun test`, since "the file fails" is the runner's verdict, not the function's.
import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasPgvector, isCi, requireOrSkip } from '../support/requires';
import { runCommand } from '../../harness/process';

const BUN = join(import.meta.dir, '..', '..', 'node_modules', '.bin', 'bun');
const REQUIRES = join(import.meta.dir, '..', 'support', 'requires.ts');
const tempDirs: string[] = [];

afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe('requireOrSkip', () => {
  test('returns describe itself when the requirement is there, silently', () => {
    const banners: string[] = [];
    const got = requireOrSkip('widget', true, 'apt-get install widget', {
      env: { CI: 'true' },
      warn: (b) => banners.push(b),
    });
    expect(got).toBe(describe);
    expect(banners).toEqual([]);
  });

  test('skips with a banner naming what is missing and how to get it, outside CI', () => {
    const banners: string[] = [];
    const got = requireOrSkip('widget', false, 'apt-get install widget', {
      missing: 'no widget on PATH',
      env: {},
      warn: (b) => banners.push(b),
    });
    expect(got).toBe(describe.skip);
    expect(banners).toEqual([
      '\n!!! SKIPPED: widget suites — no widget on PATH. Install: apt-get install widget. ' +
        '(CI=true makes this a failure.)\n\n',
    ]);
  });

  test('throws under CI=true instead of skipping', () => {
    const warn = (): void => {
      throw new Error('must not print a skip banner under CI');
    };
    expect(() =>
      requireOrSkip('widget', false, 'apt-get install widget', { env: { CI: 'true' }, warn }),
    ).toThrow(
      'widget suites cannot run: widget is not available. CI=true, so this is a failure ' +
        'rather than a skip. Install: apt-get install widget.',
    );
  });

  test('reads CI=true only, as CI services set it', () => {
    expect(isCi({ CI: 'true' })).toBe(true);
    for (const value of [undefined, '', 'false', '0']) expect(isCi({ CI: value })).toBe(false);
  });
});

describe('a test file whose requirement is missing', () => {
  /** Runs a one-suite test file needing a missing "widget" in a child `bun test`. */
  async function runFile(ci: boolean) {
    const dir = mkdtempSync(join(tmpdir(), 'threadstore-requires-'));
    tempDirs.push(dir);
    writeFileSync(
      join(dir, 'widget.test.ts'),
      `import { expect, test } from 'bun:test';
import { requireOrSkip } from ${JSON.stringify(REQUIRES)};
requireOrSkip('widget', false, 'apt-get install widget')('needs a widget', () => {
  test('uses the widget', () => expect(1).toBe(1));
});
`,
    );
    const env: Record<string, string | undefined> = { ...process.env, CI: ci ? 'true' : undefined };
    // Outside the repository there is no bunfig.toml, so no PostgreSQL is started for this.
    const { code, stdout, stderr } = await runCommand([BUN, 'test', './widget.test.ts'], {
      cwd: dir,
      env,
    });
    return { code, output: stdout + stderr };
  }

  test('is skipped with the banner, and the run passes, outside CI', async () => {
    const run = await runFile(false);
    expect(run.output).toContain('!!! SKIPPED: widget suites — widget is not available.');
    expect(run.output).toMatch(/\b1 skip\b/);
    expect(run.code).toBe(0);
  });

  test('fails the run under CI=true', async () => {
    const run = await runFile(true);
    expect(run.output).toContain('widget suites cannot run');
    expect(run.output).not.toContain('!!! SKIPPED');
    expect(run.code).toBe(1);
  });
});

describe('hasPgvector', () => {
  test('answers for the test PostgreSQL, and throws when the server is unreachable', async () => {
    expect(typeof (await hasPgvector(process.env.TEST_DATABASE_URL!))).toBe('boolean');
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    await expect(hasPgvector('postgres://postgres@127.0.0.1:1/postgres')).rejects.toThrow();
  });
});
