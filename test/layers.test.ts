import { describe, expect, test } from 'bun:test';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const SRC = join(import.meta.dir, '..', 'src');
const IMPORT = /(?:import|export)\s+(?:type\s+)?(?:[^'"]*?\s+from\s+)?['"]([^'"]+)['"]/g;

/** The relative imports of every TypeScript file under `dir` (of src), as "file: specifier". */
function importsUnder(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(join(SRC, dir), { recursive: true }) as string[]) {
    if (!name.endsWith('.ts')) continue;
    const text = readFileSync(join(SRC, dir, name), 'utf8');
    for (const m of text.matchAll(IMPORT)) found.push(`${dir}/${name}: ${m[1]}`);
  }
  return found;
}

describe('the low layers never import a feature module', () => {
  for (const dir of ['plugins', 'db', 'lib', 'auth']) {
    test(`src/${dir}`, () => {
      expect(importsUnder(dir).filter((i) => /(^|\/)modules\//.test(i.split(': ')[1]!))).toEqual(
        [],
      );
    });
  }
});
