// The wgpu-rnn page: trains a character-level RNN/LSTM/GRU in the browser with the
// wasm package (./pkg, built by web/serve.sh) and draws the loss as it goes.
//
// The page publishes its state on <body> for people and tests alike:
//   data-state       idle | training | paused | done | error
//   data-step        steps trained so far
//   data-loss        training loss of the last chunk (nats/char)
//   data-loss-first  training loss of the first chunk of this model
//   data-val         last validation loss (empty until one)
//   data-error       the last error message (empty when none)
//   data-errors      how many errors were shown so far
//   data-adapter     the GPU adapter of the current model
//   data-dispatches  GPU dispatches in the last training step (one submit per step)
// and the last sample in #sample.

// The package is imported in main() rather than statically, so that a missing or broken
// package is reported on the page instead of silently stopping this module.
let Session = null;
let defaultCorpus = null;
let checkText = null;

const CHUNK_STEPS = 10;           // steps per train() call; the page updates between chunks
const EVAL_EVERY = 200;           // validate, keep a checkpoint and print a sample this often
const SAMPLE_CHARS = 200;
const SAMPLE_TEMPERATURE = 0.8;
const CHECKPOINT_NAME = 'wgpu-rnn-text.safetensors';
const WEBGPU_HELP = 'This page needs WebGPU: Chrome or Edge 113+ on Windows, macOS, ChromeOS '
  + 'and Android; Chrome on Linux with chrome://flags/#enable-unsafe-webgpu enabled (and started '
  + 'with --enable-features=Vulkan); Safari 26+; Firefox 141+ on Windows (or Firefox Nightly with '
  + 'dom.webgpu.enabled). The page must come from https:// or localhost.';

const $ = (id) => document.getElementById(id);
const body = document.body;

const app = {
  ready: false,       // the wasm package is loaded and WebGPU has an adapter
  busy: false,        // creating or loading a model
  session: null,
  step: 0,            // mirrors session.step (read from train results, so no call overlaps one in flight)
  startStep: 0,       // the step the current model started from (non-zero after a load)
  target: 0,          // the step to stop at; 0 = until paused
  evalEvery: EVAL_EVERY,
  loop: null,         // the running training loop's promise
  stopRequested: false,
  healthy: false,     // false after a failed train/validate/checkpoint, until a chunk trains again
  lastGood: null,     // checkpoint bytes from the last validation (or the loaded file)
  lastGoodStep: 0,
  text: null,         // the user's training text; null = the built-in corpus
  train: [],          // [step, loss] per chunk
  val: [],            // [step, loss] per validation
  lastEvalStep: -1,
  tokensPerSecond: null,
  errors: 0,
  loseDeviceAt: 0,    // URL parameter lose_device_at (tests)
  config: null,       // the model (session.config, parsed)
  adapterInfo: '',    // what the browser tells of its adapter (GPUAdapterInfo)
};

// ---- session calls, one at a time ------------------------------------------------------
// The wasm object must not be entered while one of its calls is in flight, so every call
// goes through this queue; a user's Sample or Download slots in between training chunks.
let queue = Promise.resolve();
function exclusive(call) {
  const run = queue.then(call);
  queue = run.catch(() => {});
  return run;
}

// ---- state, status and errors ---------------------------------------------------------
function setState(state) {
  body.dataset.state = state;
  updateButtons();
  updateStatus();
}

function setStatus(text) {
  $('status').textContent = text;
}

function updateStatus() {
  const s = app.step;
  const messages = {
    idle: !app.ready ? 'Loading the wasm package and looking for a WebGPU adapter…' : `Ready. Start trains a new model on ${app.text === null ? 'the built-in corpus' : 'your text'}.`,
    training: `Training: step ${s}${app.target ? ` of ${app.target}` : ' (until paused)'}.`,
    paused: `Paused at step ${s}. Resume continues training; Sample writes text.`,
    done: `Done at step ${s}. Resume trains on.`,
    error: app.session
      ? `Stopped at step ${s} by the error below. Resume continues training this model.`
      : 'Stopped by the error below.',
  };
  setStatus(messages[body.dataset.state] ?? '');
}

function showError(err) {
  let message = (err && err.message) || String(err);
  if (/device was lost/i.test(message)) {
    message += ' On this page: Download checkpoint saves the last good one (from the last '
      + 'validation); reload the page and load it to go on.';
  }
  console.error(err);
  app.stopRequested = true;
  app.errors += 1;
  body.dataset.errors = String(app.errors);
  body.dataset.error = message;
  $('error').textContent = message;
  $('error').hidden = false;
  setState('error');
}

function clearError() {
  body.dataset.error = '';
  $('error').textContent = '';
  $('error').hidden = true;
}

// Wraps an async event handler so that every failure is shown, never lost.
function handler(fn) {
  return async (event) => {
    try {
      await fn(event);
    } catch (err) {
      showError(err);
    }
  };
}

function updateButtons() {
  const running = app.loop !== null;
  const has = app.session !== null;
  $('start').disabled = !app.ready || app.busy;
  $('pause').disabled = !running;
  $('resume').disabled = !has || running || app.busy;
  $('sample-btn').disabled = !has || app.busy;
  $('download').disabled = !has && !app.lastGood;
  $('load-file').disabled = !app.ready || app.busy;
  $('load-file').parentElement.classList.toggle('disabled', !app.ready || app.busy);
  $('use-text').disabled = !app.ready || app.busy;
  $('show-corpus').disabled = !app.ready;
}

// ---- reading the controls and the URL -------------------------------------------------
function parseInteger(name, text, min) {
  const value = Number(String(text).trim());
  if (String(text).trim() === '' || !Number.isInteger(value) || value < min) {
    throw new Error(`${name}: '${text}' is not a whole number of at least ${min}`);
  }
  return value;
}

function parsePositive(name, text) {
  const value = Number(String(text).trim());
  if (String(text).trim() === '' || !Number.isFinite(value) || value <= 0) {
    throw new Error(`${name}: '${text}' is not a positive number`);
  }
  return value;
}

function parseChoice(name, text, choices) {
  if (!choices.includes(text)) {
    throw new Error(`${name}: '${text}' is not one of ${choices.join(', ')}`);
  }
  return text;
}

// The options JSON for Session.create, from the controls.
function readOptions() {
  const [cell, nonlinearity] = $('cell').value.split('-');
  const options = {
    cell,
    hidden: parseInteger('hidden', $('hidden').value, 1),
    layers: parseInteger('layers', $('layers').value, 1),
    embedding: parseInteger('embedding', $('embedding').value, 0),
    seq: parseInteger('seq', $('seq').value, 1),
    batch: parseInteger('batch', $('batch').value, 1),
    optimizer: $('optimizer').value,
    lr: parsePositive('lr', $('lr').value),
    seed: parseInteger('seed', $('seed').value, 0),
  };
  if (nonlinearity) options.nonlinearity = nonlinearity;
  return options;
}

// Total steps to train; 0 (or empty) = until paused.
function readSteps() {
  const text = $('steps').value.trim();
  return text === '' ? 0 : parseInteger('steps', text, 0);
}

// Fills the controls from the URL; returns whether to start training at once.
function applyUrl() {
  const params = new URLSearchParams(window.location.search);
  let cell = null;
  let nonlinearity = null;
  let autostart = false;
  for (const [key, value] of params) {
    const name = `URL parameter ${key}`;
    switch (key) {
      case 'cell': cell = parseChoice(name, value, ['rnn', 'lstm', 'gru']); break;
      case 'nonlinearity': nonlinearity = parseChoice(name, value, ['tanh', 'relu']); break;
      case 'hidden': case 'layers': case 'seq': case 'batch':
        $(key).value = parseInteger(name, value, 1); break;
      case 'seed': case 'steps': case 'embedding':
        $(key).value = parseInteger(name, value, 0); break;
      case 'lr': $('lr').value = parsePositive(name, value); break;
      case 'optimizer':
        $('optimizer').value = parseChoice(name, value, ['adam', 'adamw', 'sgd', 'adagrad']); break;
      case 'sample_every': app.evalEvery = parseInteger(name, value, 1); break;
      case 'autostart': autostart = parseChoice(name, value, ['0', '1']) === '1'; break;
      // For tests of the recovery from a lost GPU: destroys the device after this step.
      case 'lose_device_at': app.loseDeviceAt = parseInteger(name, value, 1); break;
      default:
        throw new Error(`unknown URL parameter '${key}' (known: cell, nonlinearity, hidden, layers, `
          + 'embedding, seq, batch, optimizer, lr, seed, steps, sample_every, autostart, lose_device_at)');
    }
  }
  if (nonlinearity && (cell ?? 'rnn') !== 'rnn') {
    throw new Error(`URL parameter nonlinearity: '${nonlinearity}' applies only to cell=rnn`);
  }
  if (cell || nonlinearity) {
    const c = cell ?? 'rnn';
    $('cell').value = c === 'rnn' ? `rnn-${nonlinearity ?? 'tanh'}` : c;
  }
  return autostart;
}

// ---- the model ------------------------------------------------------------------------
async function replaceSession(session, checkpointBytes) {
  const old = app.session;
  app.session = session;
  app.step = session.step;
  app.startStep = app.step;
  app.healthy = true;
  app.lastGood = checkpointBytes;
  app.lastGoodStep = app.step;
  app.train = [];
  app.val = [];
  app.lastEvalStep = checkpointBytes ? app.step : -1;
  app.tokensPerSecond = null;
  Object.assign(body.dataset, { step: app.step, loss: '', lossFirst: '', val: '', adapter: session.adapter });
  $('adapter').textContent = app.adapterInfo ? `${app.adapterInfo} (${session.adapter})` : session.adapter;
  app.config = JSON.parse(session.config);
  showConfig(app.config, session.dispatchesPerStep);
  updateStats();
  scheduleDraw();
  if (old) await exclusive(() => old.free());
}

function showConfig(config, dispatches) {
  const rnn = `rnn-${config.nonlinearity ?? 'tanh'}`;
  const cell = config.cell === 'rnn' ? `RNN (${config.nonlinearity ?? 'tanh'})` : config.cell.toUpperCase();
  const layers = `${config.layers} layer${config.layers === 1 ? '' : 's'}`;
  const inputs = config.embedding > 0 ? `, ${config.embedding}-dimensional embedding` : ', one-hot inputs';
  $('model-info').textContent = `Model: ${cell}, hidden ${config.hidden}, ${layers}, `
    + `${config.vocab}-character vocabulary${inputs}`
    + (dispatches > 0 ? `, ${dispatches} GPU dispatches per training step.` : '.');
  $('cell').value = config.cell === 'rnn' ? rnn : config.cell;
  $('hidden').value = config.hidden;
  $('layers').value = config.layers;
  $('embedding').value = config.embedding;
}

async function start() {
  if (app.busy) return;  // a second click while a model is being made
  const options = readOptions();
  const steps = readSteps();
  app.busy = true;
  updateButtons();
  try {
    await stopLoop();
    clearError();
    setStatus('Creating the model (compiling the shaders)…');
    const session = await Session.create(JSON.stringify(options), app.text);
    await replaceSession(session, null);
  } finally {
    app.busy = false;
  }
  $('sample').textContent = '';
  $('sample-caption').textContent = '';
  app.target = steps;
  runLoop();
}

async function resume() {
  if (!app.session || app.loop) return;
  const steps = readSteps();
  // "Steps" is the total; once reached, Resume trains that many more.
  app.target = steps === 0 ? 0 : steps > app.step ? steps : app.step + steps;
  clearError();
  runLoop();
}

function pause() {
  if (!app.loop) return;
  app.stopRequested = true;
  setStatus(`Pausing after this chunk (step ${app.step})…`);
}

async function stopLoop() {
  app.stopRequested = true;
  if (app.loop) await app.loop;
}

function runLoop() {
  app.stopRequested = false;
  setState('training');
  app.loop = trainLoop()
    .catch((err) => {
      app.healthy = false;
      showError(err);
    })
    .finally(() => {
      app.loop = null;
      updateButtons();
    });
  updateButtons();
}

const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));

async function trainLoop() {
  const session = app.session;
  while (!app.stopRequested) {
    if (app.target && app.step >= app.target) break;
    let steps = Math.min(CHUNK_STEPS, app.evalEvery - (app.step % app.evalEvery));
    if (app.target) steps = Math.min(steps, app.target - app.step);
    const t0 = performance.now();
    const result = JSON.parse(await exclusive(() => session.train(steps)));
    recordChunk(result, (performance.now() - t0) / 1000);
    if (app.loseDeviceAt && app.step >= app.loseDeviceAt) {
      app.loseDeviceAt = 0;
      await exclusive(() => session.loseDevice());
    }
    if (app.step % app.evalEvery === 0) await evaluate(session);
    await nextTask();
  }
  const reached = app.target > 0 && app.step >= app.target;
  if (reached && body.dataset.state !== 'error' && app.lastEvalStep !== app.step) {
    await evaluate(session);
  }
  // An error shown meanwhile (say from Use this text) stays the page's state.
  if (body.dataset.state !== 'error') setState(reached ? 'done' : 'paused');
}

function recordChunk(result, seconds) {
  app.healthy = true;
  app.step = result.step;
  app.train.push([result.step, result.loss]);
  if (body.dataset.lossFirst === '') body.dataset.lossFirst = String(result.loss);
  body.dataset.loss = String(result.loss);
  body.dataset.step = String(result.step);
  body.dataset.dispatches = String(result.dispatches);
  if (app.config) showConfig(app.config, result.dispatches);
  if (seconds > 0) {
    const rate = result.tokens / seconds;
    app.tokensPerSecond = app.tokensPerSecond === null ? rate : 0.7 * app.tokensPerSecond + 0.3 * rate;
  }
  updateStats();
  if (!app.busy) updateStatus();
  scheduleDraw();
}

// Validation loss, a checkpoint kept as the last good one, and a sample.
async function evaluate(session) {
  const val = await exclusive(() => session.validate());
  app.val.push([app.step, val]);
  body.dataset.val = String(val);
  app.lastGood = await exclusive(() => session.checkpoint());
  app.lastGoodStep = app.step;
  app.lastEvalStep = app.step;
  updateStats();
  scheduleDraw();
  const text = await exclusive(() => session.sample('', SAMPLE_TEMPERATURE, SAMPLE_CHARS));
  showSample(text, `step ${app.step}, temperature ${SAMPLE_TEMPERATURE}`);
}

function showSample(text, caption) {
  $('sample').textContent = text;
  $('sample-caption').textContent = `(${caption})`;
}

async function sampleNow() {
  const session = app.session;
  if (!session) throw new Error('Start or load a model first.');
  const temperature = Number($('temperature').value);
  const length = parseInteger('length', $('sample-len').value, 1);
  const text = await exclusive(() => session.sample($('prime').value, temperature, length));
  showSample(text, `on request at step ${app.step}, temperature ${temperature}`);
  settleError();
}

// ---- text and files -------------------------------------------------------------------
async function useText() {
  const text = $('text').value;
  const session = app.session;
  if (session) {
    await exclusive(() => session.setText(text));
  } else {
    const { seq, batch } = readOptions();
    checkText(text, seq, batch);
  }
  app.text = text === defaultCorpus() ? null : text;
  const what = app.text === null ? 'The built-in corpus' : `Your text (${text.length.toLocaleString('en-US')} characters)`;
  $('text-info').textContent = `${what}: ${session ? 'the model trains on it from now on.' : 'Start trains on it.'}`;
  settleError();
}

// After a user's action succeeds, an earlier error no longer describes the page.
function settleError() {
  if (body.dataset.state === 'error' && !app.loop) {
    clearError();
    setState(app.session ? 'paused' : 'idle');
  } else {
    updateStatus();
  }
}

async function loadCheckpoint(file) {
  if (app.busy) throw new Error('A model is being made or loaded; wait for it, then load the file.');
  const bytes = new Uint8Array(await file.arrayBuffer());
  // The model's shape comes from the checkpoint; the controls give the training options.
  const { seq, batch, lr, optimizer, seed } = readOptions();
  app.busy = true;
  updateButtons();
  setStatus(`Loading ${file.name}…`);
  try {
    const session = await Session.load(bytes, JSON.stringify({ seq, batch, lr, optimizer, seed }), app.text);
    await stopLoop();
    await replaceSession(session, bytes);
  } finally {
    app.busy = false;
  }
  clearError();
  setState('paused');
  setStatus(`Loaded ${file.name} at step ${app.step}. Resume continues training; Sample writes text.`);
}

async function download() {
  const session = app.session;
  let bytes = null;
  let failure = null;
  if (session && app.healthy) {
    try {
      bytes = await exclusive(() => session.checkpoint());
    } catch (err) {
      app.healthy = false;
      failure = err;
    }
  }
  if (!bytes) bytes = app.lastGood;
  if (!bytes) throw failure ?? new Error('There is no checkpoint to download yet.');
  const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = CHECKPOINT_NAME;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  if (bytes === app.lastGood && app.lastGood) {
    setStatus(`Downloaded the last good checkpoint (step ${app.lastGoodStep}).`);
  }
  if (failure) {
    throw new Error(`${failure.message} (downloaded the last good checkpoint, from step ${app.lastGoodStep}, instead)`);
  }
}

function hasFiles(event) {
  return Array.from(event.dataTransfer?.types ?? []).includes('Files');
}

async function dropFile(event) {
  const file = event.dataTransfer.files[0];
  if (!file) return;
  if (!app.ready) throw new Error('The page is not ready for files yet (see the message above).');
  if (app.busy) throw new Error('A model is being made or loaded; wait for it, then drop the file.');
  if (/\.safetensors$/i.test(file.name)) {
    await loadCheckpoint(file);
  } else {
    $('text').value = await file.text();
    await useText();
  }
}

// ---- stats and the chart --------------------------------------------------------------
function updateStats() {
  const fmt = (v) => (v === undefined || v === '' ? '–' : Number(v).toFixed(3));
  $('stat-step').textContent = app.target ? `${app.step} / ${app.target}` : String(app.step);
  $('stat-loss').textContent = fmt(body.dataset.loss);
  $('stat-val').textContent = fmt(body.dataset.val);
  $('stat-tps').textContent = app.tokensPerSecond === null
    ? '–' : Math.round(app.tokensPerSecond).toLocaleString('en-US');
}

let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    drawChart();
  });
}

// Round tick positions covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
function ticks(lo, hi, count, minStep = 0) {
  const raw = Math.max((hi - lo) / count, minStep);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
  return { values: out, step };
}

function drawChart() {
  const canvas = $('chart');
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const css = getComputedStyle(body);
  const color = (name) => css.getPropertyValue(name).trim();
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillStyle = color('--muted');

  // A diverged loss (NaN, or null in the JSON) is left out of the chart.
  const finite = (data) => data.filter((p) => Number.isFinite(p[1]));
  const train = finite(app.train);
  const val = finite(app.val);
  const points = train.concat(val);
  if (points.length === 0) {
    ctx.textAlign = 'center';
    ctx.fillText('The training and validation loss appear here.', width / 2, height / 2);
    return;
  }
  const left = 52;
  const right = width - 14;
  const top = 14;
  const bottom = height - 36;
  const x0 = app.startStep;
  const x1 = Math.max(app.step, app.target, x0 + 1);
  let y0 = Math.min(...points.map((p) => p[1]));
  let y1 = Math.max(...points.map((p) => p[1]));
  const margin = Math.max((y1 - y0) * 0.08, 0.05);
  y0 = Math.max(0, y0 - margin);
  y1 += margin;
  const px = (x) => left + ((x - x0) / (x1 - x0)) * (right - left);
  const py = (y) => bottom - ((y - y0) / (y1 - y0)) * (bottom - top);

  // grid and axes
  ctx.strokeStyle = color('--grid');
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  const yt = ticks(y0, y1, 5);
  for (const y of yt.values) {
    ctx.beginPath();
    ctx.moveTo(left, py(y));
    ctx.lineTo(right, py(y));
    ctx.stroke();
    ctx.fillText(y.toFixed(yt.step < 0.1 ? 2 : 1), left - 6, py(y));
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const x of ticks(x0, x1, Math.max(2, Math.floor((right - left) / 90)), 1).values) {
    ctx.beginPath();
    ctx.moveTo(px(x), top);
    ctx.lineTo(px(x), bottom);
    ctx.stroke();
    ctx.fillText(String(Math.round(x)), px(x), bottom + 6);
  }
  ctx.fillText('step', (left + right) / 2, bottom + 20);
  ctx.save();
  ctx.translate(12, (top + bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = 'middle';
  ctx.fillText('loss (nats/char)', 0, 0);
  ctx.restore();

  // the two series
  const series = (data, stroke, dots) => {
    ctx.strokeStyle = stroke;
    ctx.fillStyle = stroke;
    ctx.lineWidth = 2;
    ctx.beginPath();
    data.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(px(x), py(y)) : ctx.lineTo(px(x), py(y))));
    ctx.stroke();
    if (dots) {
      for (const [x, y] of data) {
        ctx.beginPath();
        ctx.arc(px(x), py(y), 4, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  };
  series(train, color('--train'), train.length === 1);
  series(val, color('--val'), true);

  // legend
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  [['training', color('--train')], ['validation', color('--val')]].forEach(([label, c], i) => {
    const y = top + 10 + i * 18;
    ctx.fillStyle = c;
    ctx.fillRect(right - 100, y - 2, 16, 4);
    ctx.fillStyle = color('--fg');
    ctx.fillText(label, right - 78, y);
  });
}

// ---- start-up -------------------------------------------------------------------------
async function webgpuProblem() {
  if (!navigator.gpu) return `WebGPU is not available in this browser. ${WEBGPU_HELP}`;
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (err) {
    console.warn('requestAdapter failed', err);
  }
  if (!adapter) return `WebGPU found no GPU adapter. ${WEBGPU_HELP}`;
  // Browsers may keep the adapter's name to themselves; show what they tell.
  const info = adapter.info ?? {};
  app.adapterInfo = [info.vendor, info.architecture, info.device, info.description]
    .filter((s) => s).join(' ');
  return null;
}

function wire() {
  $('options').addEventListener('submit', (event) => event.preventDefault());
  $('start').addEventListener('click', handler(start));
  $('pause').addEventListener('click', handler(pause));
  $('resume').addEventListener('click', handler(resume));
  $('sample-btn').addEventListener('click', handler(sampleNow));
  $('use-text').addEventListener('click', handler(useText));
  $('download').addEventListener('click', handler(download));
  $('show-corpus').addEventListener('click', handler(() => { $('text').value = defaultCorpus(); }));
  $('load-file').addEventListener('change', handler(async (event) => {
    const file = event.target.files[0];
    event.target.value = '';   // so that choosing the same file again fires again
    if (file) await loadCheckpoint(file);
  }));
  document.addEventListener('dragover', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    body.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => body.classList.remove('dragging'));
  document.addEventListener('drop', handler(async (event) => {
    body.classList.remove('dragging');
    if (!hasFiles(event)) return;
    event.preventDefault();
    await dropFile(event);
  }));
  new ResizeObserver(scheduleDraw).observe($('chart'));
  window.addEventListener('unhandledrejection', (event) => showError(event.reason));
  window.addEventListener('error', (event) => showError(event.error ?? event.message));
}

async function main() {
  wire();
  setState('idle');
  scheduleDraw();
  let autostart = false;
  let urlError = null;
  try {
    autostart = applyUrl();
  } catch (err) {
    urlError = err;
  }
  try {
    const wasm = await import('./pkg/wgpu_rnn_web.js');
    await wasm.default();
    ({ Session, defaultCorpus, checkText } = wasm);
  } catch (err) {
    throw new Error('Could not load the wasm package ./pkg/wgpu_rnn_web.js (build it with '
      + `web/serve.sh): ${err.message ?? err}`);
  }
  const problem = await webgpuProblem();
  if (problem) throw new Error(problem);
  app.ready = true;
  updateButtons();
  updateStatus();
  if (urlError) throw urlError;
  if (autostart) await start();
}

handler(main)();
