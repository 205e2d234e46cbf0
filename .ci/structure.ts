// The shape of src/ at a glance, for reviews of a restructuring: files and lines per folder, the
// longest functions, and imports that point from a lower layer (plugins, db, lib) into modules.
// Usage: bun .ci/structure.ts [dir]   (import cycles: npx -y madge@8 --circular --extensions ts src)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const ROOT = join(import.meta.dir, '..');
const SRC = join(ROOT, process.argv[2] ?? 'src');
/** Folders that must not import from modules/. */
const LOWER_LAYERS = ['plugins', 'db', 'lib'];
const LONGEST = 10;
/** How many lines a signature may span before its body opens. */
const SIGNATURE_LINES = 12;

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/**
 * Functions with their length in lines: a declaration, method or arrow function whose body
 * opens on its first line, measured to the brace that closes it. A line-based reading (string
 * and comment contents with braces can skew a count), precise enough to rank.
 */
function functionsOf(file: string): { name: string; lines: number }[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const found: { name: string; lines: number }[] = [];
  const start =
    /^\s*(?:export\s+)?(?:async\s+)?(?:function\s*\*?\s*(\w+)|(?:const|let)\s+(\w+)\s*=\s*(?:async\s*)?(?:\(|function)|(?:(?:private|static|async|public|protected)\s+)*#?(\w+)\s*(?:<[^>]*>)?\()/;
  const keywords = ['if', 'for', 'while', 'switch', 'catch', 'return', 'await', 'new', 'typeof'];
  lines.forEach((line, i) => {
    const m = start.exec(line);
    if (!m) return;
    const name = m[1] ?? m[2] ?? m[3]!;
    if (keywords.includes(name)) return;
    // The body opens on the line that ends the signature (within a few lines), or it is no body.
    const open = lines.findIndex((l, j) => j >= i && j < i + SIGNATURE_LINES && /[{]\s*$/.test(l));
    if (open < 0 || (m[3] && !/^\s/.test(line))) return;
    let depth = 0;
    for (let j = open; j < lines.length; j++) {
      const code = lines[j]!.replace(
        /'(?:\\.|[^'])*'|"(?:\\.|[^"])*"|`(?:\\.|[^`])*`|\/\/.*$/g,
        '',
      );
      for (const ch of code) {
        if (ch === '{') depth++;
        else if (ch === '}') depth--;
      }
      if (depth <= 0) {
        found.push({ name: `${relative(ROOT, file)}:${i + 1} ${name}`, lines: j - i + 1 });
        return;
      }
    }
  });
  return found;
}

const files = tsFiles(SRC);
const perFolder = new Map<string, { files: number; lines: number }>();
const upward: string[] = [];
for (const file of files) {
  const folder = relative(SRC, dirname(file)) || '.';
  const text = readFileSync(file, 'utf8');
  const entry = perFolder.get(folder) ?? { files: 0, lines: 0 };
  entry.files++;
  entry.lines += text.split('\n').length;
  perFolder.set(folder, entry);
  const layer = folder.split('/')[0]!;
  if (LOWER_LAYERS.includes(layer)) {
    for (const m of text.matchAll(/from '([^']+)'/g)) {
      if (m[1]!.includes('/modules/')) upward.push(`${relative(ROOT, file)} -> ${m[1]}`);
    }
  }
}

console.log('files and lines per folder:');
for (const [folder, { files: n, lines }] of [...perFolder].sort()) {
  console.log(
    `  ${folder.padEnd(28)} ${String(n).padStart(3)} files ${String(lines).padStart(6)} lines`,
  );
}
console.log(`\nlongest functions:`);
for (const f of files
  .flatMap(functionsOf)
  .sort((a, b) => b.lines - a.lines)
  .slice(0, LONGEST)) {
  console.log(`  ${String(f.lines).padStart(4)} lines  ${f.name}`);
}
console.log(`\nimports from ${LOWER_LAYERS.join('/, ')}/ into modules/: ${upward.length}`);
for (const line of upward) console.log(`  ${line}`);
