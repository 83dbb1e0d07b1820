// Writes tests/facenets/face_chain_reference.json: face-api's own chain after detection,
//   DetectAllFaceLandmarksTask(given detections).withFaceExpressions().withAgeAndGender()
//     .withFaceDescriptors()
// (landmarks on the detection crop, min-bbox aligned crop -> expressions and age/gender,
// dlib-aligned crop -> descriptor), run by @vladmandic/face-api 1.7.15 on the pure-JS
// TensorFlow.js CPU backend, on images whose pixels C++ reproduces exactly:
//   - "face": a real face, the region x 370..629, y 310..629 of demo/sample1.jpg decoded by
//     jpeg-js, averaged over 2x2 blocks (integer, rounded half up) -> 130 x 160 RGB, stored in
//     the fixture as base64;
//   - "lcg": 97 x 61 LCG noise (tests/reference/make_reference.js's pattern, seed 9).
// Photos decoded by another JPEG decoder (OpenCV/libjpeg) differ from jpeg-js by up to tens
// of levels per pixel, which moves age and expressions far more than our numerics do; this
// fixture isolates the face nets and the alignment from the decoder and the detector.
//
// Usage: (cd tests/reference && npm ci) && node tests/facenets/make_chain_reference.js
'use strict';

const fs = require('fs');
const path = require('path');

const here = __dirname;
const modules = path.join(here, '../reference/node_modules');
const jpeg = require(path.join(modules, 'jpeg-js'));
const faceapi = require(path.join(modules, '@vladmandic/face-api/dist/face-api.node-wasm.js'));

const tf = faceapi.tf;
const root = path.join(here, '../..');
const modelDir = path.join(root, 'data/face-api/model');
const outFile = path.join(here, 'face_chain_reference.json');

function faceImage() {
  const img = jpeg.decode(fs.readFileSync(path.join(root, 'data/face-api/demo/sample1.jpg')),
    { useTArray: true, formatAsRGBA: false });
  const x0 = 370; const y0 = 310; const w = 130; const h = 160;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let dy = 0; dy < 2; dy++) {
          for (let dx = 0; dx < 2; dx++) {
            s += img.data[((y0 + 2 * y + dy) * img.width + (x0 + 2 * x + dx)) * 3 + c];
          }
        }
        out[(y * w + x) * 3 + c] = (s + 2) >> 2;
      }
    }
  }
  return { width: w, height: h, rgb: out };
}

function lcgImage(w, h, seed) {
  const out = new Uint8Array(w * h * 3);
  let s = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return { width: w, height: h, rgb: out };
}

async function chain(image, boxes) {
  const { width, height } = image;
  const tensor = tf.tensor3d(Int32Array.from(image.rgb), [height, width, 3], 'int32');
  const parents = boxes.map(([x, y, w, h]) => faceapi.extendWithFaceDetection({},
    new faceapi.FaceDetection(0.9, new faceapi.Rect(x / width, y / height, w / width, h / height),
      { width, height })));
  const results = await new faceapi.DetectAllFaceLandmarksTask(Promise.resolve(parents), tensor, false)
    .withFaceExpressions().withAgeAndGender().withFaceDescriptors();
  tensor.dispose();
  return results.map((r) => {
    const d = r.landmarks.align(null, { useDlibAlignment: true });
    const a = r.alignedRect.box;
    return {
      detection: [r.detection.box.x, r.detection.box.y, r.detection.box.width, r.detection.box.height],
      landmarks: r.landmarks.positions.map((p) => [p.x, p.y]),
      aligned_rect: [a.x, a.y, a.width, a.height],
      dlib_rect: [d.x, d.y, d.width, d.height],
      expressions: ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgusted', 'surprised']
        .map((k) => r.expressions[k]),
      age: r.age,
      gender: r.gender,
      gender_probability: r.genderProbability,
      descriptor: Array.from(r.descriptor),
    };
  });
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  await faceapi.nets.ageGenderNet.loadFromDisk(modelDir);
  await faceapi.nets.faceExpressionNet.loadFromDisk(modelDir);

  const face = faceImage();
  const lcg = lcgImage(97, 61, 9);
  const ref = {
    generator: 'tests/facenets/make_chain_reference.js',
    versions: { 'face-api': faceapi.version, tfjs: tf.version_core, backend: tf.getBackend() },
    note: 'boxes [x, y, width, height] in pixels; landmarks [x, y]; expressions in order '
      + 'neutral, happy, sad, angry, fearful, disgusted, surprised',
    cases: [
      {
        name: 'face', width: face.width, height: face.height,
        rgb_base64: Buffer.from(face.rgb).toString('base64'),
        // the detection (face-api's box on sample1 / 2, shifted), one shifted off the edges
        faces: await chain(face, [[22.2, 22.9, 89.1, 119.2], [-6.6, 50.3, 90.4, 121.5]]),
      },
      {
        name: 'lcg', width: lcg.width, height: lcg.height, seed: 9,
        faces: await chain(lcg, [[10.5, 5.25, 40.75, 50.5], [60.3, -4.1, 50.2, 30.8]]),
      },
    ],
  };
  fs.writeFileSync(outFile, `${JSON.stringify(ref)}\n`);
  console.error(`wrote ${outFile} (${fs.statSync(outFile).size} bytes)`);
}

main().catch((e) => { console.error(e); process.exit(1); });
