// Bundles the browser assets with esbuild: `node build.mjs OUTDIR` (build.rs passes its OUT_DIR).
// Each page is one self-contained script and one stylesheet, embedded into the witness binary.
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, 'dist');
await mkdir(out, { recursive: true });
await build({
  entryPoints: { replay: join(here, 'src/replay.js'), console: join(here, 'src/console.js') },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome100', 'firefox100', 'safari15'],
  outdir: out,
  legalComments: 'eof',
  logLevel: 'warning',
});
await copyFile(join(here, 'src/witness.css'), join(out, 'witness.css'));
