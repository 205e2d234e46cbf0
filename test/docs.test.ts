import { describe, expect, test } from 'bun:test';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configDefaults, configKeys } from '../src/config';

const root = join(import.meta.dir, '..');

/** The rows of the first Markdown table after `heading` (or of the whole file): name, default. */
function variableRows(file: string, heading?: string): Array<{ name: string; fallback: string }> {
  let text = readFileSync(join(root, file), 'utf8');
  if (heading) text = text.slice(text.indexOf(heading));
  const rows: Array<{ name: string; fallback: string }> = [];
  for (const line of text.split('\n')) {
    const m = /^\| `([A-Z][A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|/.exec(line);
    if (m) rows.push({ name: m[1]!, fallback: m[2]! });
    else if (rows.length > 0 && !line.startsWith('|')) break;
  }
  return rows;
}

describe('the documentation of the configuration follows the schema', () => {
  const table = variableRows('docs/configuration.md');

  test('docs/configuration.md lists exactly the variables src/config.ts reads, once each', () => {
    const names = table.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
    expect([...names].sort()).toEqual([...configKeys()].sort());
  });

  test("docs/configuration.md shows each variable's schema default", () => {
    const defaults = configDefaults();
    for (const { name, fallback } of table) {
      const d = defaults[name];
      if (d === undefined) continue;
      // An empty default reads better as a word than as an empty code span.
      const shown = d === '' ? 'empty' : `\`${String(d)}\``;
      expect({ name, fallback }).toEqual({ name, fallback: shown });
    }
  });

  test('every README "settings that matter" row is a real variable, shown as in the full table', () => {
    const rows = variableRows('README.md', '## The settings that matter');
    expect(rows.length).toBeGreaterThanOrEqual(8);
    const full = new Map(table.map((r) => [r.name, r.fallback]));
    for (const { name, fallback } of rows) {
      expect(configKeys()).toContain(name);
      expect({ name, fallback }).toEqual({ name, fallback: full.get(name)! });
    }
  });
});

describe('links between the documentation pages', () => {
  const pages = ['README.md', 'CHANGELOG.md', 'bench/HISTORY.md'];
  for (const f of readdirMarkdown('docs')) pages.push(`docs/${f}`);

  test('every relative link points at a file that exists, and at a heading of it', () => {
    const missing: string[] = [];
    for (const page of pages) {
      const text = readFileSync(join(root, page), 'utf8');
      for (const [, target, anchor] of text.matchAll(/\]\(([^)#\s]*)(?:#([^)\s]*))?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const path = target ? join(root, page, '..', target) : join(root, page);
        if (!existsSync(path)) missing.push(`${page} -> ${target}`);
        else if (anchor && !headingSlugs(path).has(anchor))
          missing.push(`${page} -> ${target}#${anchor}`);
      }
    }
    expect(missing).toEqual([]);
  });
});

/** The anchors GitHub gives the headings of a Markdown file. */
function headingSlugs(path: string): Set<string> {
  const slugs = new Set<string>();
  for (const [, title] of readFileSync(path, 'utf8').matchAll(/^#{1,6} (.+)$/gm)) {
    slugs.add(
      title!
        .toLowerCase()
        .replace(/[^a-z0-9 _-]/g, '')
        .replace(/ /g, '-'),
    );
  }
  return slugs;
}

/** The Markdown files directly under `dir`. */
function readdirMarkdown(dir: string): string[] {
  return readdirSync(join(root, dir)).filter((f) => f.endsWith('.md'));
}
