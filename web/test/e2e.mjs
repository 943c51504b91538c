// End-to-end test of the demo page in headless Chromium (WebGPU on SwiftShader, Chromium's
// software Vulkan). The page imports the engine as the `mamba-wgpu` package (web/dist/npm/,
// through its import map). Serves web/dist on 127.0.0.1 at a free port and checks:
//   (a) ids mode on a fixture of each family (mamba1-tiny, falcon-mamba-tiny, mamba2-tiny): the
//       greedy ids equal the fixture's greedy_ids[0];
//   (b) text mode on the shipped model: #output equals the native CLI's greedy output;
//   (c) the mamba1-tiny fixture picked as local files generates the same ids, and Stop ends a
//       long run;
//   (d) the page's benchmark mode (?bench=1) on the shipped model and a synthetic mamba-130m:
//       prints its JSON and checks it holds both tokens-per-submit rows with their figures and
//       the fixed costs (a submit's round trip, an empty dispatch); the JSON also goes to
//       target/browser-bench.json;
//   (e) GGUF files (E2E_GGUF: made by `mamba-wgpu quantize`, then by tools/make_gguf.py with the
//       `gguf` package) picked in the file picker load tensor by tensor and generate the CLI's
//       greedy text on each file; the page keeps the first in the browser's storage (OPFS), and
//       a second page of the same browser profile loads it from there (?saved=NAME) and
//       generates the same text.
//
// Usage: node web/test/e2e.mjs   (after web/build.sh; `cargo test --release --test browser`
// runs both). Environment:
//   E2E_PROMPT, E2E_MAX_TOKENS  the text case's prompt and token count (default "ROMEO:", 20)
//   E2E_EXPECTED_TEXT           what `mamba-wgpu generate --prompt P --max-tokens N
//                               --temperature 0` prints; when unset the script runs
//                               target/release/mamba-wgpu itself
//   E2E_EXPECTED_ERROR          why the expected text could not be made (fails case (b))
//   CHROMIUM                    the browser (default /usr/bin/chromium)
//   E2E_TIMEOUT_S               per-case limit (default 600: SwiftShader is slow)
//   E2E_CASES                   the cases to run, e.g. "d" (default "abcde")
//   E2E_GGUF                    case (e)'s files and expected texts, JSON [{"file", "text"}]
//                               (E2E_GGUF_ERROR: why there are none, which fails the case)
//   E2E_BENCH_TOKENS            decode tokens per benchmark measurement (default 16; the
//                               synthetic mamba-130m decodes a quarter of them)
// Exits 1 if any case fails. Never downloads a browser.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { executablePath, launchChromium, serve } from './support.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const dist = path.join(root, 'web', 'dist');
const timeoutMs = Number(process.env.E2E_TIMEOUT_S || 600) * 1000;
const prompt = process.env.E2E_PROMPT ?? 'ROMEO:';
const maxTokens = Number(process.env.E2E_MAX_TOKENS || 20);
const screenshotPath = path.join(here, 'screenshot.png');
const FIXTURES = ['mamba1-tiny', 'falcon-mamba-tiny', 'mamba2-tiny'];
const cases = new Set((process.env.E2E_CASES || 'abcde').split(''));
// Where the benchmark mode's JSON is also written (tools/test.sh prints it).
const benchPath = path.join(root, 'target', 'browser-bench.json');

function fail(message) {
  console.error(`e2e: ${message}`);
  process.exit(1);
}

/** The native CLI's greedy output, the reference for case (b). */
function expectedText() {
  if (process.env.E2E_EXPECTED_ERROR) return { error: process.env.E2E_EXPECTED_ERROR };
  if (process.env.E2E_EXPECTED_TEXT !== undefined) return { text: process.env.E2E_EXPECTED_TEXT };
  const cli = path.join(root, 'target', 'release', 'mamba-wgpu');
  if (!existsSync(cli)) return { error: `no E2E_EXPECTED_TEXT and no ${cli} (cargo build --release)` };
  try {
    // --json gives the generated text exactly (in text mode the CLI ends its line).
    const out = execFileSync(cli, ['generate', '--model', 'models/shakespeare-mamba', '--prompt', prompt,
      '--max-tokens', String(maxTokens), '--temperature', '0', '--json'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { text: JSON.parse(out).text };
  } catch (e) {
    return { error: `the native CLI failed: ${e.stderr || e.message}` };
  }
}

/** What the page shows. */
function pageState(page) {
  return page.evaluate(() => ({
    status: document.body.dataset.status,
    output: document.getElementById('output').textContent,
    error: document.getElementById('error').textContent,
    stats: document.getElementById('stats').textContent,
    adapter: document.getElementById('adapter').textContent,
  }));
}

/** Clicks Generate and waits for that run to end. */
async function generate(page) {
  const before = await page.evaluate(() => Number(document.body.dataset.run || 0));
  await page.click('#generate');
  await page.waitForFunction((n) => Number(document.body.dataset.run || 0) > n
    && ['done', 'error'].includes(document.body.dataset.status), before, { timeout: timeoutMs });
  return pageState(page);
}

/** Opens `query` on the page and waits until it reaches `until` (or an error). */
async function runPage(browser, base, query, logs, until = 'done') {
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  page.on('requestfailed', (r) => logs.push(`[requestfailed] ${r.url()} ${r.failure()?.errorText}`));
  const t0 = Date.now();
  await page.goto(`${base}/${query}`);
  let timedOut = false;
  try {
    await page.waitForSelector(`body[data-status="${until}"], body[data-status="error"]`, { timeout: timeoutMs });
  } catch (e) {
    timedOut = true;
    logs.push(`[e2e] ${e.message.split('\n')[0]}`);
  }
  const result = await pageState(page);
  if (timedOut) result.status = `timeout (still ${result.status})`;
  result.seconds = (Date.now() - t0) / 1000;
  return { page, result };
}

function parseMaybeJson(value) {
  return typeof value === 'string' ? JSON.parse(value) : value;
}

async function main() {
  if (!existsSync(executablePath)) fail(`no browser at ${executablePath}: apt-get install -y chromium (or set CHROMIUM)`);
  if (!existsSync(path.join(dist, 'npm', 'mamba_wgpu_bg.wasm'))) fail(`${dist} is not built: run web/build.sh`);
  // One fixture of each model family: (prompt ids, greedy ids) of its first sequence.
  const fixtures = {};
  for (const name of FIXTURES) {
    const json = path.join(dist, 'fixtures', name, 'expected.json');
    if (!existsSync(json)) fail(`${json} is missing: web/build.sh copies it from tests/fixtures`);
    const expected = JSON.parse(readFileSync(json, 'utf8'));
    fixtures[name] = { promptIds: parseMaybeJson(expected.input_ids)[0], greedyIds: parseMaybeJson(expected.greedy_ids)[0] };
  }
  const { promptIds, greedyIds } = fixtures['mamba1-tiny'];

  const server = await serve(dist);
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await launchChromium();
  const failures = [];
  const check = (name, ok, detail, logs) => {
    console.log(`${ok ? 'ok' : 'FAIL'} - ${name}${detail ? `\n    ${detail.replace(/\n/g, '\n    ')}` : ''}`);
    if (!ok) {
      failures.push(name);
      if (logs.length) console.log(`    page log:\n      ${logs.join('\n      ')}`);
    }
  };
  try {
    console.log(`e2e: ${await browser.version()} at ${executablePath}, serving ${dist} at ${base}`);

    // (a) ids mode on a fixture of each family
    for (const [name, { promptIds, greedyIds }] of Object.entries(cases.has('a') ? fixtures : {})) {
      const logs = [];
      const query = `?model=fixtures/${name}&prompt_ids=${promptIds.join(',')}&max_tokens=${greedyIds.length}&autorun=1`;
      const { page, result } = await runPage(browser, base, query, logs);
      const got = result.output.trim().split(/\s+/).filter(Boolean).map(Number);
      const ok = result.status === 'done' && JSON.stringify(got) === JSON.stringify(greedyIds);
      check(`fixture ${name}: greedy ids match greedy_ids[0] of expected.json`, ok,
        `adapter: ${result.adapter}\nstatus: ${result.status} after ${result.seconds.toFixed(1)} s; ${result.stats}` +
        `${result.error ? `\nerror: ${result.error}` : ''}\ngot:      ${got.join(' ')}\nexpected: ${greedyIds.join(' ')}`, logs);
      await page.close();
    }

    // (c) the visitor's own files: load the fixture through the file picker, generate, then stop
    // a long run with the Stop button.
    if (cases.has('c')) {
      const logs = [];
      const fixtureDir = path.join(dist, 'fixtures', 'mamba1-tiny');
      const query = `?model=fixtures/mamba1-tiny&prompt_ids=${promptIds.join(',')}&max_tokens=${greedyIds.length}`;
      const { page, result: first } = await runPage(browser, base, query, logs, 'ready');
      let detail = `initial load: ${first.status}`;
      let ok = first.status === 'ready';
      if (ok) {
        await page.setInputFiles('#files-input', ['config.json', 'model.safetensors'].map((f) => path.join(fixtureDir, f)));
        await page.waitForFunction(() => document.getElementById('model-name').textContent === 'local files'
          && ['ready', 'error'].includes(document.body.dataset.status), null, { timeout: timeoutMs });
        const picked = await generate(page);
        const got = picked.output.trim().split(/\s+/).map(Number);
        ok = picked.status === 'done' && JSON.stringify(got) === JSON.stringify(greedyIds);
        detail += `; from picked files: ${picked.status}, ids ${JSON.stringify(got) === JSON.stringify(greedyIds) ? 'match' : `differ: ${got.join(' ')}`}` +
          `${picked.error ? ` (${picked.error})` : ''}`;
        await page.fill('#max-tokens', '100000');
        const runs = await page.evaluate(() => Number(document.body.dataset.run || 0));
        const long = generate(page);
        await page.waitForFunction((n) => Number(document.body.dataset.run) > n
          && document.getElementById('output').textContent.trim().split(/\s+/).filter(Boolean).length >= 3, runs, { timeout: timeoutMs });
        await page.click('#stop');
        const stopped = await long;
        const count = stopped.output.trim().split(/\s+/).filter(Boolean).length;
        const cancelled = stopped.status === 'done' && /stop: cancelled/.test(stopped.stats) && count >= 3 && count < 1000;
        ok = ok && cancelled;
        detail += `; Stop: ${stopped.status} after ${count} tokens, "${stopped.stats}"`;
      }
      check('picked model files load and generate; Stop ends a long run', ok, detail, logs);
      await page.close();
    }

    // (b) text mode on the shipped model, against the native CLI
    if (cases.has('b')) {
      const logs = [];
      const expected = expectedText();
      const query = `?prompt=${encodeURIComponent(prompt)}&max_tokens=${maxTokens}&temperature=0&autorun=1`;
      const { page, result } = await runPage(browser, base, query, logs);
      await page.screenshot({ path: screenshotPath, fullPage: true });
      const ok = expected.error === undefined && result.status === 'done' && result.output === expected.text;
      check(`shakespeare-mamba: ${maxTokens} greedy tokens after ${JSON.stringify(prompt)} equal the native CLI's`, ok,
        `status: ${result.status} after ${result.seconds.toFixed(1)} s; ${result.stats}` +
        `${result.error ? `\nerror: ${result.error}` : ''}` +
        `\ngot:      ${JSON.stringify(result.output)}` +
        `\nexpected: ${expected.error ? `(none: ${expected.error})` : JSON.stringify(expected.text)}` +
        `\nscreenshot: ${path.relative(root, screenshotPath)}`, logs);
      await page.close();
    }

    // (d) the benchmark mode
    if (cases.has('d')) {
      const logs = [];
      const tokens = Number(process.env.E2E_BENCH_TOKENS || 16);
      const { page, result } = await runPage(browser, base, `?bench=1&bench_tokens=${tokens}`, logs, 'bench-done');
      const text = await page.evaluate(() => document.getElementById('bench').textContent);
      let ok = result.status === 'bench-done';
      let detail = `status: ${result.status} after ${result.seconds.toFixed(1)} s${result.error ? `\nerror: ${result.error}` : ''}`;
      try {
        const json = JSON.parse(text);
        console.log(`benchmark mode (?bench=1) in ${result.seconds.toFixed(1)} s:\n${text}`);
        writeFileSync(benchPath, `${text}\n`);
        for (const which of ['loaded', 'synthetic']) {
          const rows = json[which]?.decode || [];
          const good = rows.length === 2 && rows[0].tokens_per_submit === 1 && rows[1].tokens_per_submit >= 2
            && rows.every((r) => r.tokens_per_s > 0 && r.dispatches_per_token > 0) && json[which].prefill_tokens_per_s > 0
            && json[which].fixed_costs?.round_trip_ms >= 0 && json[which].fixed_costs?.empty_dispatch_ms >= 0;
          ok = ok && good;
          if (!good) detail += `\n${which}: ${JSON.stringify(json[which])}`;
        }
      } catch (e) {
        ok = false;
        detail += `\n#bench holds no JSON: ${JSON.stringify(text)}`;
      }
      check('benchmark mode: decode at 1 and at the adapter\'s tokens per submit, dispatches, prefill', ok, detail, logs);
      await page.close();
    }

    // (e) a GGUF file through the file picker, then from the browser's storage
    if (cases.has('e')) {
      const logs = [];
      const files = process.env.E2E_GGUF ? JSON.parse(process.env.E2E_GGUF) : [];
      let ok = files.length > 0 && files.every((f) => existsSync(f.file));
      let detail = ok ? '' : `no GGUF file to test: ${process.env.E2E_GGUF_ERROR || 'E2E_GGUF is unset'}`;
      if (ok) {
        const { file, text: expected } = files[0];
        const name = path.basename(file);
        const context = await browser.newContext();
        const query = `?prompt=${encodeURIComponent(prompt)}&max_tokens=${maxTokens}&temperature=0`;
        const { page, result: first } = await runPage(context, base, query, logs, 'ready');
        ok = first.status === 'ready';
        detail = `initial load: ${first.status}`;
        if (ok) {
          await page.setInputFiles('#files-input', [file]);
          await page.waitForFunction((n) => (document.body.dataset.saved === n && document.body.dataset.status === 'ready')
            || document.body.dataset.status === 'error', name, { timeout: timeoutMs });
          const picked = await generate(page);
          ok = picked.status === 'done' && picked.output === expected;
          detail += `; picked ${name}: ${picked.status}${picked.error ? ` (${picked.error})` : ''}, text ${picked.output === expected ? 'matches' : `differs: ${JSON.stringify(picked.output)}`}`;
          const { page: again, result: saved } = await runPage(context, base, `${query}&saved=${encodeURIComponent(name)}&autorun=1`, logs);
          const same = saved.status === 'done' && saved.output === expected;
          ok = ok && same;
          detail += `; from the browser's storage: ${saved.status}${saved.error ? ` (${saved.error})` : ''}, text ${same ? 'matches' : `differs: ${JSON.stringify(saved.output)}`}`;
          await again.close();
          for (const other of files.slice(1)) {
            const otherName = path.basename(other.file);
            await page.setInputFiles('#files-input', [other.file]);
            await page.waitForFunction((n) => (document.body.dataset.saved === n && document.body.dataset.status === 'ready')
              || document.body.dataset.status === 'error', otherName, { timeout: timeoutMs });
            const result = await generate(page);
            const good = result.status === 'done' && result.output === other.text;
            ok = ok && good;
            detail += `; picked ${otherName}: ${result.status}${result.error ? ` (${result.error})` : ''}, text ${good ? 'matches' : `differs: ${JSON.stringify(result.output)}`}`;
          }
        }
        detail += `\nexpected: ${files.map((f) => JSON.stringify(f.text)).join(', ')}`;
        await page.close();
        await context.close();
      }
      check('GGUF files (quantize\'s, the converter\'s) picked load tensor by tensor and generate the CLI\'s text; the first is kept in the browser (OPFS) and generates it again from there', ok, detail, logs);
    }
  } finally {
    await browser.close();
    server.close();
  }
  if (failures.length) fail(`${failures.length} case(s) failed: ${failures.join('; ')}`);
  console.log('e2e: all cases passed');
}

main().catch((e) => fail(e.stack || String(e)));
