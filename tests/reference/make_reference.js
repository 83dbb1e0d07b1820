// Writes tests/fixtures/face_api_reference.json: the outputs of @vladmandic/face-api 1.7.15
// (the models' own reference implementation) running on the pure-JS TensorFlow.js CPU backend
// in Node.js, for
//   1. the six demo photos: SSD-MobileNetV1 detection (minConfidence 0.5, maxResults 100:
//      face-api's defaults) + 68-point landmarks (FaceLandmark68Net, not the tiny one) +
//      expressions + age/gender + 128-d descriptors, exactly the chain
//      detectAllFaces(img, new SsdMobilenetv1Options({minConfidence: 0.5, maxResults: 100}))
//        .withFaceLandmarks().withFaceExpressions().withAgeAndGender().withFaceDescriptors();
//   2. each net's raw outputs on a fixed deterministic input ("fixed_inputs"): an image tensor
//      [size, size, 3] of integers 0..255 from a 32-bit LCG (see lcg_image below; C++ can
//      regenerate it bit for bit), of exactly the net's input size so face-api neither pads nor
//      resizes it.
//
// Photos are decoded twice: "images" runs on the pixels OpenCV imgcodecs (libjpeg-turbo)
// decodes, which is what the C++ side sees (binary PPMs written by dump_rgb.cpp, --pixels DIR),
// so the full-pipeline comparison is not blurred by JPEG decoder differences; "images_jpeg_js"
// runs on jpeg-js's decoding (a different IDCT/upsampling) and keeps only score, box, age and
// gender, to document how much the decoder alone moves the results.
//
// Usage (from this folder): see README.md.
//   node make_reference.js --pixels PPM_DIR [model_dir] [photo_dir] [out.json]
// Defaults: ../../data/face-api/model, ../../data/face-api/demo,
//           ../fixtures/face_api_reference.json
'use strict';

const fs = require('fs');
const path = require('path');
const jpeg = require('jpeg-js');
// The node-wasm build of face-api requires @tensorflow/tfjs (pure JS, includes the CPU backend)
// instead of the native @tensorflow/tfjs-node; we select the 'cpu' backend below.
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const tf = faceapi.tf;
const here = __dirname;
const args = process.argv.slice(2);
let pixelDir = null;
if (args[0] === '--pixels') { pixelDir = path.resolve(args[1]); args.splice(0, 2); }
if (!pixelDir) { console.error('usage: node make_reference.js --pixels PPM_DIR [model_dir] [photo_dir] [out.json]'); process.exit(2); }
const modelDir = path.resolve(args[0] || path.join(here, '../../data/face-api/model'));
const photoDir = path.resolve(args[1] || path.join(here, '../../data/face-api/demo'));
const outFile = path.resolve(args[2] || path.join(here, '../fixtures/face_api_reference.json'));

const MIN_CONFIDENCE = 0.5;
const MAX_RESULTS = 100;

// 6 significant digits keeps the fixture small; tests compare at 1e-4 relative.
const r = (v) => Number(Number(v).toPrecision(6));
const ra = (a) => Array.from(a, r);

// Pixel i (row-major over [size, size, 3]) = top 8 bits of the LCG state after i+1 steps:
// s = s * 1664525 + 1013904223 (mod 2^32), starting from `seed`.
function lcg_image(size, seed) {
  const data = new Int32Array(size * size * 3);
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s >>> 24;
  }
  return tf.tensor3d(data, [size, size, 3], 'int32');
}

// Binary PPM (P6, maxval 255) as written by OpenCV's imwrite.
function readPpm(file) {
  const buf = fs.readFileSync(file);
  const header = [];
  let pos = 0;
  while (header.length < 4) {
    while (/\s/.test(String.fromCharCode(buf[pos]))) pos++;
    if (buf[pos] === 0x23) { while (buf[pos] !== 0x0a) pos++; continue; }
    let tok = '';
    while (!/\s/.test(String.fromCharCode(buf[pos]))) tok += String.fromCharCode(buf[pos++]);
    header.push(tok);
  }
  pos++;
  const [magic, w, h, maxval] = header;
  if (magic !== 'P6' || maxval !== '255') throw new Error(`${file}: expected a binary 8-bit PPM`);
  const width = Number(w);
  const height = Number(h);
  const data = buf.subarray(pos, pos + width * height * 3);
  if (data.length !== width * height * 3) throw new Error(`${file}: truncated`);
  return { width, height, tensor: tf.tensor3d(Int32Array.from(data), [height, width, 3], 'int32') };
}

function decodePhoto(file) {
  const img = jpeg.decode(fs.readFileSync(file), { useTArray: true, formatAsRGBA: false });
  const { width, height, data } = img;
  if (data.length !== width * height * 3) throw new Error(`${file}: unexpected pixel layout`);
  return { width, height, tensor: tf.tensor3d(Int32Array.from(data), [height, width, 3], 'int32') };
}

async function fixedInputs() {
  const out = {
    pattern: 'lcg: s = s*1664525 + 1013904223 mod 2^32, pixel[i] = s >> 24 after step i+1; '
      + 'tensor [size, size, 3] row-major, integers 0..255 (RGB)',
  };

  // SSD-MobileNetV1: decoded boxes [5118, 4] (ymin, xmin, ymax, xmax, relative to the padded
  // 512x512 input) and sigmoid face scores [5118] as forwardInput returns them (before NMS).
  {
    const size = 512;
    const seed = 1;
    const img = lcg_image(size, seed);
    const netInput = await faceapi.toNetInput(img);
    const { boxes, scores } = faceapi.nets.ssdMobilenetv1.forwardInput(netInput);
    const b = boxes[0].arraySync();
    const s = Array.from(scores[0].dataSync());
    const top = s.map((v, i) => [v, i]).sort((x, y) => y[0] - x[0]).slice(0, 20).map((x) => x[1]);
    const idx = [...new Set([...Array.from({ length: Math.ceil(s.length / 8) }, (_, k) => 8 * k), ...top])]
      .sort((x, y) => x - y);
    out.ssd_mobilenetv1 = {
      size, seed,
      num_anchors: s.length,
      scores: ra(s),
      box_indices: idx,
      boxes: idx.map((i) => ra(b[i])),
    };
    tf.dispose([img, ...boxes, ...scores]);
  }

  // FaceLandmark68Net: runNet output [136] (x0, y0, x1, ...: relative to the 112x112 input;
  // postProcess is the identity for a square input of the net's size).
  {
    const size = 112;
    const seed = 2;
    const img = lcg_image(size, seed);
    const netInput = await faceapi.toNetInput(img);
    const raw = faceapi.nets.faceLandmark68Net.runNet(netInput);
    out.face_landmark_68 = { size, seed, raw: ra(raw.dataSync()) };
    tf.dispose([img, raw]);
  }

  // FaceRecognitionNet: descriptor [128] (forwardInput; not L2-normalised).
  {
    const size = 150;
    const seed = 3;
    const img = lcg_image(size, seed);
    const netInput = await faceapi.toNetInput(img);
    const d = faceapi.nets.faceRecognitionNet.forwardInput(netInput);
    out.face_recognition = { size, seed, descriptor: ra(d.dataSync()) };
    tf.dispose([img, d]);
  }

  // AgeGenderNet: runNet age [1] and gender logits [2] (male, female), and softmax probs.
  {
    const size = 112;
    const seed = 4;
    const img = lcg_image(size, seed);
    const netInput = await faceapi.toNetInput(img);
    const raw = faceapi.nets.ageGenderNet.runNet(netInput);
    const fwd = faceapi.nets.ageGenderNet.forwardInput(netInput);
    out.age_gender = {
      size, seed,
      age: ra(raw.age.dataSync()),
      gender_logits: ra(raw.gender.dataSync()),
      gender_probs: ra(fwd.gender.dataSync()),
    };
    tf.dispose([img, raw.age, raw.gender, fwd.age, fwd.gender]);
  }

  // FaceExpressionNet: runNet logits [7] and softmax probs, in face-api's order
  // neutral, happy, sad, angry, fearful, disgusted, surprised.
  {
    const size = 112;
    const seed = 5;
    const img = lcg_image(size, seed);
    const netInput = await faceapi.toNetInput(img);
    const raw = faceapi.nets.faceExpressionNet.runNet(netInput);
    const fwd = faceapi.nets.faceExpressionNet.forwardInput(netInput);
    out.face_expression = {
      size, seed,
      labels: ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgusted', 'surprised'],
      logits: ra(raw.dataSync()),
      probs: ra(fwd.dataSync()),
    };
    tf.dispose([img, raw, fwd]);
  }
  return out;
}

async function photos(decoder) {
  const files = fs.readdirSync(photoDir).filter((f) => /^sample\d+\.jpg$/.test(f)).sort();
  const opts = new faceapi.SsdMobilenetv1Options({ minConfidence: MIN_CONFIDENCE, maxResults: MAX_RESULTS });
  const images = [];
  for (const f of files) {
    const { width, height, tensor } = decoder === 'opencv'
      ? readPpm(path.join(pixelDir, f.replace(/\.jpg$/, '.ppm')))
      : decodePhoto(path.join(photoDir, f));
    const t0 = Date.now();
    const results = await faceapi.detectAllFaces(tensor, opts)
      .withFaceLandmarks().withFaceExpressions().withAgeAndGender().withFaceDescriptors();
    const faces = results.map((res) => ({
      score: r(res.detection.score),
      box: [res.detection.box.x, res.detection.box.y, res.detection.box.width, res.detection.box.height].map(r),
      age: r(res.age),
      gender: res.gender,
      gender_probability: r(res.genderProbability),
      expressions: Object.fromEntries(
        ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgusted', 'surprised'].map((k) => [k, r(res.expressions[k])]),
      ),
      descriptor: ra(res.descriptor),
      landmarks: res.landmarks.positions.map((p) => [r(p.x), r(p.y)]),
    }));
    console.error(`${f} (${decoder}): ${width}x${height}, ${faces.length} faces, ${Date.now() - t0} ms`);
    images.push({
      file: f,
      width,
      height,
      faces: decoder === 'opencv' ? faces : faces.map(({ score, box, age, gender, gender_probability }) => ({
        score, box, age, gender, gender_probability,
      })),
    });
    tensor.dispose();
  }
  return images;
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  await faceapi.nets.ageGenderNet.loadFromDisk(modelDir);
  await faceapi.nets.faceExpressionNet.loadFromDisk(modelDir);

  const ref = {
    generator: 'tests/reference/make_reference.js',
    versions: { 'face-api': faceapi.version, tfjs: tf.version_core, backend: tf.getBackend(), 'jpeg-js': require('jpeg-js/package.json').version },
    options: {
      detector: 'ssd_mobilenetv1', min_confidence: MIN_CONFIDENCE, max_results: MAX_RESULTS, iou_threshold: 0.5,
      landmarks: 'face_landmark_68 (full)',
      decoder: 'images: OpenCV imgcodecs IMREAD_COLOR (libjpeg-turbo) via dump_rgb.cpp; images_jpeg_js: jpeg-js',
      box: '[x, y, width, height] in pixels of the original photo; landmarks [x, y] in pixels',
    },
    fixed_inputs: await fixedInputs(),
    images: await photos('opencv'),
    images_jpeg_js: await photos('jpeg-js'),
  };
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, `${JSON.stringify(ref)}\n`);
  console.error(`wrote ${outFile} (${fs.statSync(outFile).size} bytes)`);
}

main().catch((e) => { console.error(e); process.exit(1); });
