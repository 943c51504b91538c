// Test of the `mamba-wgpu` npm package (web/dist/npm/, made by web/build.sh) as an app gets it:
//   1. package.json (name, Cargo.toml's version, ES module entry points, types, files, license)
//      and the type declarations: index.d.ts declares every method the wasm engine has;
//   2. `npm pack`, then `npm install --offline` of the tarball into a scratch app in a temp
//      folder (no network: the package has no dependencies); Node resolves 'mamba-wgpu' through
//      the package's exports to the documented names;
//   3. the app (index.html + app.js, importing 'mamba-wgpu' through an import map that points at
//      node_modules/mamba-wgpu/index.js) runs in headless Chromium (WebGPU on SwiftShader),
//      served by the e2e test's static server: fetchModel + loadModel + generateIds on the
//      mamba1-tiny fixture give greedy_ids[0] of its expected.json, streamed and returned; the
//      wasm comes from node_modules/mamba-wgpu/; errors are Error objects with a message; stop()
//      ends a long run as "cancelled"; readModelFiles on File objects loads the same model; and
//      MambaEngine.create() without init() initializes the module itself. The methods and the
//      generate() options the engine has at run time must all be in index.d.ts.
// TypeScript is not needed; when web/node_modules has `typescript`, the app's types are
// checked too.
//
// Usage: node web/test/npm-package.mjs   (after web/build.sh; `cargo test --release --test
// browser` runs both). Environment: CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_S
// (per page, default 600), NPM_TEST_KEEP=1 keeps the temp folder. Exits 1 if a check fails.

import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { executablePath, launchChromium, serve } from './support.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const pkgDir = path.join(root, 'web', 'dist', 'npm');
const fixtureDir = path.join(root, 'web', 'dist', 'fixtures', 'mamba1-tiny');
const timeoutMs = Number(process.env.E2E_TIMEOUT_S || 600) * 1000;
const PACKAGE_FILES = ['index.js', 'index.d.ts', 'mamba_wgpu.js', 'mamba_wgpu.d.ts', 'mamba_wgpu_bg.wasm', 'mamba_wgpu_bg.wasm.d.ts', 'README.md'];
const EXPORTS = ['MambaEngine', 'default', 'fetchModel', 'loadGguf', 'readModelFiles', 'renderChat'];

function fail(message) {
  console.error(`npm-package: ${message}`);
  process.exit(1);
}

const failures = [];
function check(name, ok, detail = '') {
  console.log(`${ok ? 'ok' : 'FAIL'} - ${name}${detail ? `\n    ${String(detail).replace(/\n/g, '\n    ')}` : ''}`);
  if (!ok) failures.push(name);
  return ok;
}

function sh(command, args, cwd) {
  try {
    return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    fail(`\`${command} ${args.join(' ')}\` in ${cwd} failed: ${e.stderr || e.message}`);
  }
}

/** The version in Cargo.toml's [package] section. */
function cargoVersion() {
  let inPackage = false;
  for (const line of readFileSync(path.join(root, 'Cargo.toml'), 'utf8').split('\n')) {
    if (/^\[/.test(line)) inPackage = line.trim() === '[package]';
    const m = inPackage && line.match(/^version\s*=\s*"([^"]+)"/);
    if (m) return m[1];
  }
  fail('no version in Cargo.toml [package]');
}

/** Method names of `export class MambaEngine { ... }` in a .d.ts file. */
function declaredMethods(dts) {
  const body = dts.match(/export (?:declare )?class MambaEngine \{([\s\S]*?)\n\}/)?.[1] ?? '';
  return [...body.matchAll(/^\s+(?:static\s+)?([A-Za-z_]\w*)\(/gm)].map((m) => m[1]).filter((n) => n !== 'constructor');
}

function checkPackageFolder() {
  const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  const version = cargoVersion();
  const dot = pkg.exports?.['.'] ?? {};
  const problems = [
    pkg.name !== 'mamba-wgpu' && `name is ${pkg.name}`,
    pkg.version !== version && `version ${pkg.version} is not Cargo.toml's ${version}`,
    pkg.type !== 'module' && 'type is not "module"',
    pkg.main !== './index.js' && 'main is not ./index.js',
    pkg.module !== './index.js' && 'module is not ./index.js',
    pkg.types !== './index.d.ts' && 'types is not ./index.d.ts',
    (dot.types !== './index.d.ts' || dot.import !== './index.js') && 'exports["."] lacks types/import',
    pkg.license !== 'MIT OR Apache-2.0' && `license is ${pkg.license}`,
    JSON.stringify([...(pkg.files ?? [])].sort()) !== JSON.stringify([...PACKAGE_FILES].sort()) && `files is ${JSON.stringify(pkg.files)}`,
    pkg.dependencies && Object.keys(pkg.dependencies).length && 'it has dependencies',
    ...PACKAGE_FILES.map((f) => !existsSync(path.join(pkgDir, f)) && `${f} is missing`),
  ].filter(Boolean);
  check(`package.json: mamba-wgpu@${version}, ES module, types, exports, files, license`, problems.length === 0, problems.join('\n'));

  const ours = readFileSync(path.join(pkgDir, 'index.d.ts'), 'utf8');
  const glue = readFileSync(path.join(pkgDir, 'mamba_wgpu.d.ts'), 'utf8');
  const engineMethods = declaredMethods(glue);
  const missing = engineMethods.filter((m) => !declaredMethods(ours).includes(m));
  const functions = ['init', 'fetchModel', 'loadGguf', 'readModelFiles'].filter((f) => !new RegExp(`export (default )?function ${f}\\(`).test(ours));
  check('index.d.ts declares every MambaEngine method of the wasm and the helpers',
    engineMethods.length > 5 && missing.length === 0 && functions.length === 0,
    `wasm's methods: ${engineMethods.join(', ')}${missing.length ? `\nmissing in index.d.ts: ${missing.join(', ')}` : ''}` +
    `${functions.length ? `\nfunctions missing: ${functions.join(', ')}` : ''}`);
  return pkg;
}

/** npm pack + npm install of the tarball into a scratch app; returns the app's folder. */
function installIntoScratchApp(tmp, pkg) {
  const [packed] = JSON.parse(sh('npm', ['pack', pkgDir, '--pack-destination', tmp, '--json', '--offline'], root));
  const tarball = path.join(tmp, packed.filename);
  const inTarball = packed.files.map((f) => f.path).sort();
  const expected = [...PACKAGE_FILES, 'package.json'].sort();
  check(`npm pack: ${packed.filename}, ${(packed.size / 1024).toFixed(0)} KiB, ${inTarball.length} files`,
    existsSync(tarball) && JSON.stringify(inTarball) === JSON.stringify(expected), `files: ${inTarball.join(', ')}`);

  const app = path.join(tmp, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }, null, 2));
  sh('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], app);
  const installed = path.join(app, 'node_modules', 'mamba-wgpu');
  const appPkg = JSON.parse(readFileSync(path.join(app, 'package.json'), 'utf8'));
  const dts = ['index.d.ts', 'mamba_wgpu.d.ts'].filter((f) => !existsSync(path.join(installed, f)));
  check('npm install --offline of the tarball: node_modules/mamba-wgpu with its .d.ts files',
    appPkg.dependencies?.['mamba-wgpu']?.endsWith(packed.filename) && dts.length === 0 &&
    JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')).version === pkg.version,
    `dependencies: ${JSON.stringify(appPkg.dependencies)}${dts.length ? `\nmissing: ${dts.join(', ')}` : ''}`);

  // Node resolves the bare name through "exports", as bundlers do.
  const probe = "const m = await import('mamba-wgpu'); console.log(JSON.stringify({ names: Object.keys(m).sort(), " +
    "wasm: import.meta.resolve('mamba-wgpu/mamba_wgpu_bg.wasm'), create: typeof m.MambaEngine.create }));";
  const resolved = JSON.parse(sh('node', ['--input-type=module', '-e', probe], app));
  check(`import 'mamba-wgpu' from the app resolves to ${EXPORTS.join(', ')}`,
    JSON.stringify(resolved.names) === JSON.stringify(EXPORTS) && resolved.create === 'function' &&
    resolved.wasm.endsWith('/node_modules/mamba-wgpu/mamba_wgpu_bg.wasm'), JSON.stringify(resolved));
  return app;
}

/** Type-checks the app against the package's types when TypeScript happens to be installed. */
function typeCheck(app) {
  const tsc = path.join(root, 'web', 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(tsc)) {
    console.log('note - typescript is not in web/node_modules: the optional type check is not run');
    return;
  }
  writeFileSync(path.join(app, 'check.ts'), `import init, { MambaEngine, fetchModel, type GenerateOptions, type TextGenerationResult } from 'mamba-wgpu';
await init();
const engine: MambaEngine = await MambaEngine.create();
const files = await fetchModel('models/x', { onProgress: (done: number, total: number) => {} });
const info = await engine.loadModel(files.config, files.weights, files.tokenizer, null, files.name);
const n: number = info.vocab_size;
const options: GenerateOptions = { max_tokens: 4, temperature: 0, stop: ['\\n'] };
const result: TextGenerationResult = await engine.generate('x', options, (piece: string) => {});
const reason: string | null = result.finish_reason;
const ids: number[] = (await engine.generateIds([1, 2], 3, (id: number) => {})).ids;
engine.stop();
`);
  let out = '';
  let ok = true;
  try {
    execFileSync('node', [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext',
      '--lib', 'es2022,dom,esnext.disposable', 'check.ts'], { cwd: app, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    ok = false;
    out = `${e.stdout || ''}${e.stderr || e.message}`;
  }
  check('tsc --strict accepts an app using the package types', ok, out);
}

const INDEX_HTML = `<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <title>scratch app</title>
  <script type="importmap">{ "imports": { "mamba-wgpu": "./node_modules/mamba-wgpu/index.js" } }</script>
  <script type="module" src="app.js"></script>
</head>
<body data-status="loading"><pre id="report"></pre></body>
</html>
`;

// The app: what the package README shows, plus the checks' bookkeeping.
const APP_JS = `import init, { MambaEngine, fetchModel, readModelFiles, renderChat } from 'mamba-wgpu';

const params = new URLSearchParams(location.search);
const report = {};
const message = (error) => (error instanceof Error ? 'Error: ' + error.message : 'not an Error: ' + String(error));

async function main() {
  if (params.get('init') === '0') {
    // create() alone: the package initializes the wasm module itself.
    const engine = await MambaEngine.create();
    report.adapter = engine.adapterInfo();
    report.model = engine.modelInfo();
    return;
  }
  const promptIds = params.get('prompt_ids').split(',').map(Number);
  const maxTokens = Number(params.get('max_tokens'));
  await init();
  const engine = await MambaEngine.create();
  report.adapter = engine.adapterInfo();
  // wasm-bindgen's internals start with __.
  report.methods = Object.getOwnPropertyNames(MambaEngine.prototype).filter((n) => n !== 'constructor' && !n.startsWith('__')).sort();

  const files = await fetchModel('models/mamba1-tiny', { onProgress: (done, total) => { report.downloaded = [done, total]; } });
  report.files = { name: files.name, tokenizer: files.tokenizer, weights: files.weights.length, isUint8Array: files.weights instanceof Uint8Array };
  report.model = await engine.loadModel(files.config, files.weights, files.tokenizer, (done, total) => { report.uploaded = [done, total]; }, files.name);
  report.modelInfo = engine.modelInfo();

  const streamed = [];
  const result = await engine.generateIds(Uint32Array.from(promptIds), maxTokens, (id) => streamed.push(id));
  report.greedy = { ids: result.ids, streamed, finish_reason: result.finish_reason, prompt_tokens: result.prompt_tokens, generated_tokens: result.generated_tokens };

  report.errors = {};
  for (const [name, run] of Object.entries({
    unknownOption: () => engine.generate('x', { topk: 3 }),
    noTokenizer: () => engine.generate('x', { temperature: 0 }),
    missingModel: () => fetchModel('models/missing'),
    missingFiles: () => readModelFiles([new File(['{}'], 'config.json')]),
  })) {
    try { await run(); report.errors[name] = 'no error'; } catch (error) { report.errors[name] = message(error); }
  }

  // Chat templates, rendered as the CLI and the server render them.
  const chatml = JSON.stringify({ chat_template: "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}" });
  report.chat = {
    plain: renderChat(null, [{ role: 'user', content: 'ROMEO:' }], true),
    chatml: renderChat(chatml, [{ role: 'user', content: 'Hi' }], true),
  };

  let seen = 0;
  const stopped = await engine.generateIds(promptIds, 100000, () => { if (++seen === 3) engine.stop(); });
  report.stopped = { finish_reason: stopped.finish_reason, generated_tokens: stopped.generated_tokens, busy: engine.isBusy() };

  const picked = await readModelFiles([new File([files.config], 'config.json'), new File([files.weights], 'model.safetensors')]);
  await engine.loadModel(picked.config, picked.weights, picked.tokenizer, null, picked.name);
  report.picked = { name: picked.name, ids: (await engine.generateIds(promptIds, maxTokens)).ids };
  engine.reset();
  engine.free();
}

main().then(
  () => { document.body.dataset.status = 'done'; },
  (error) => { report.error = message(error); document.body.dataset.status = 'error'; },
).finally(() => { document.getElementById('report').textContent = JSON.stringify(report); });
`;

/** Opens the app at `query`; resolves to its report and the URLs it requested. */
async function runApp(browser, base, query) {
  const page = await browser.newPage();
  const logs = [];
  const requests = [];
  page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  page.on('request', (r) => requests.push(new URL(r.url()).pathname));
  const t0 = Date.now();
  await page.goto(`${base}/${query}`);
  let status;
  try {
    await page.waitForSelector('body[data-status="done"], body[data-status="error"]', { timeout: timeoutMs });
    status = await page.evaluate(() => document.body.dataset.status);
  } catch (e) {
    status = `timeout: ${e.message.split('\n')[0]}`;
  }
  const text = await page.evaluate(() => document.getElementById('report').textContent);
  await page.close();
  return { status, report: text ? JSON.parse(text) : {}, requests, logs, seconds: (Date.now() - t0) / 1000 };
}

async function main() {
  for (const f of ['package.json', 'mamba_wgpu_bg.wasm']) {
    if (!existsSync(path.join(pkgDir, f))) fail(`${path.join(pkgDir, f)} is missing: run web/build.sh`);
  }
  if (!existsSync(path.join(fixtureDir, 'expected.json'))) fail(`${fixtureDir}/expected.json is missing: web/build.sh copies it from tests/fixtures`);
  if (!existsSync(executablePath)) fail(`no browser at ${executablePath}: apt-get install -y chromium (or set CHROMIUM)`);
  const expected = JSON.parse(readFileSync(path.join(fixtureDir, 'expected.json'), 'utf8'));
  const parse = (v) => (typeof v === 'string' ? JSON.parse(v) : v);
  const promptIds = parse(expected.input_ids)[0];
  const greedyIds = parse(expected.greedy_ids)[0];

  const pkg = checkPackageFolder();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'mamba-wgpu-npm-'));
  let server;
  let browser;
  try {
    const app = installIntoScratchApp(tmp, pkg);
    typeCheck(app);
    writeFileSync(path.join(app, 'index.html'), INDEX_HTML);
    writeFileSync(path.join(app, 'app.js'), APP_JS);
    mkdirSync(path.join(app, 'models', 'mamba1-tiny'), { recursive: true });
    for (const f of ['config.json', 'model.safetensors']) cpSync(path.join(fixtureDir, f), path.join(app, 'models', 'mamba1-tiny', f));

    server = await serve(app);
    const base = `http://127.0.0.1:${server.address().port}`;
    browser = await launchChromium();
    console.log(`npm-package: ${await browser.version()} at ${executablePath}, serving the scratch app ${app} at ${base}`);

    const run = await runApp(browser, base, `?prompt_ids=${promptIds.join(',')}&max_tokens=${greedyIds.length}`);
    const r = run.report;
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    const logs = run.status !== 'done' && run.logs.length ? `\npage log:\n  ${run.logs.join('\n  ')}` : '';
    check('the app ran to the end', run.status === 'done', `status: ${run.status} after ${run.seconds.toFixed(1)} s${r.error ? `\nerror: ${r.error}` : ''}${logs}`);
    check('the wasm and glue came from node_modules/mamba-wgpu/',
      ['index.js', 'mamba_wgpu.js', 'mamba_wgpu_bg.wasm'].every((f) => run.requests.includes(`/node_modules/mamba-wgpu/${f}`)),
      run.requests.join('\n'));
    const indexDts = readFileSync(path.join(pkgDir, 'index.d.ts'), 'utf8');
    const documented = declaredMethods(indexDts);
    const undocumented = (r.methods ?? []).filter((m) => !documented.includes(m));
    check('every method of MambaEngine at run time is in index.d.ts', r.methods?.length > 5 && undocumented.length === 0,
      `methods: ${(r.methods ?? []).join(', ')}${undocumented.length ? `\nnot in index.d.ts: ${undocumented.join(', ')}` : ''}`);
    check('fetchModel + loadModel: the fixture, no tokenizer, progress reported',
      r.files?.name === 'models/mamba1-tiny' && r.files.tokenizer === null && r.files.isUint8Array &&
      r.downloaded?.[0] === r.files.weights && r.uploaded?.[0] > 0 && r.uploaded[0] === r.uploaded[1] &&
      r.model?.has_tokenizer === false && r.model.model_type === 'mamba' && same(r.model, r.modelInfo),
      `files: ${JSON.stringify(r.files)}\ndownloaded: ${JSON.stringify(r.downloaded)}, uploaded: ${JSON.stringify(r.uploaded)}\nmodel: ${JSON.stringify(r.model)}`);
    check('generateIds: greedy ids equal greedy_ids[0] of expected.json, streamed and returned',
      same(r.greedy?.ids, greedyIds) && same(r.greedy.streamed, greedyIds) && r.greedy.finish_reason === 'max-tokens' &&
      r.greedy.prompt_tokens === promptIds.length && r.greedy.generated_tokens === greedyIds.length,
      `adapter: ${JSON.stringify(r.adapter)}\ngot:      ${JSON.stringify(r.greedy)}\nexpected: ${greedyIds.join(' ')}`);
    const e = r.errors ?? {};
    check('errors reject with an Error and a message',
      /^Error: invalid argument `options`: unknown field `topk`/.test(e.unknownOption) && /^Error: .*no tokenizer/.test(e.noTokenizer) &&
      /^Error: could not fetch models\/missing\/config\.json: HTTP 404/.test(e.missingModel) && /^Error: pick config\.json/.test(e.missingFiles),
      JSON.stringify(e, null, 2));
    // The engine's error for an unknown option lists the options it takes.
    const accepted = [...(e.unknownOption?.split('expected one of')[1] ?? '').matchAll(/`(\w+)`/g)].map((m) => m[1]).sort();
    const typed = [...(indexDts.match(/export interface GenerateOptions \{([\s\S]*?)\n\}/)?.[1] ?? '').matchAll(/^\s+(\w+)\?:/gm)].map((m) => m[1]).sort();
    check('GenerateOptions in index.d.ts has exactly the options the engine takes', accepted.length > 5 && same(accepted, typed),
      `engine: ${accepted.join(', ')}\nindex.d.ts: ${typed.join(', ')}`);
    check('stop() ends a long generation as "cancelled"',
      r.stopped?.finish_reason === 'cancelled' && r.stopped.generated_tokens >= 3 && r.stopped.generated_tokens < 100 && r.stopped.busy === false,
      JSON.stringify(r.stopped));
    check('renderChat: the plain transcript and a ChatML template',
      r.chat?.plain === 'ROMEO:\n\n' && r.chat?.chatml === '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n', JSON.stringify(r.chat));
    check('readModelFiles on File objects loads the model; the same greedy ids',
      r.picked?.name === 'local files' && same(r.picked.ids, greedyIds), JSON.stringify(r.picked));

    const auto = await runApp(browser, base, '?init=0');
    check('MambaEngine.create() without init() initializes the module',
      auto.status === 'done' && typeof auto.report.adapter?.backend === 'string' && auto.report.model === null,
      `status: ${auto.status}; ${JSON.stringify(auto.report)}${auto.logs.length ? `\npage log:\n  ${auto.logs.join('\n  ')}` : ''}`);
  } finally {
    await browser?.close();
    server?.close();
    if (process.env.NPM_TEST_KEEP === '1') console.log(`npm-package: kept ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }
  if (failures.length) fail(`${failures.length} check(s) failed: ${failures.join('; ')}`);
  console.log('npm-package: all checks passed');
}

main().catch((e) => fail(e.stack || String(e)));
