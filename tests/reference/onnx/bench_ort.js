// ONNX Runtime's side of benchmarks/cpu_backend's ONNX rows: one model, batch 1, CPU execution
// provider with a given intra-op thread count; prints {"median_ms", "images_per_s"} as JSON.
//   node bench_ort.js MODEL.onnx N,C,H,W THREADS RUNS
'use strict';
const ort = require('onnxruntime-node');
const [file, dimsArg, threadsArg, runsArg] = process.argv.slice(2);
const dims = dimsArg.split(',').map(Number);
const threads = Number(threadsArg), runs = Number(runsArg);
(async () => {
  const sess = await ort.InferenceSession.create(file, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1,
    graphOptimizationLevel: 'all'});
  const n = dims.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n);
  for (let i = 0; i < n; ++i) x[i] = (Math.imul(i, 2654435761 | 0) >>> 0) / 4294967296 - 0.5;
  const feeds = {[sess.inputNames[0]]: new ort.Tensor('float32', x, dims)};
  await sess.run(feeds);  // warm-up
  const ms = [];
  for (let r = 0; r < runs; ++r) {
    const t0 = process.hrtime.bigint();
    await sess.run(feeds);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((a, b) => a - b);
  const median = ms[Math.floor(ms.length / 2)];
  console.log(JSON.stringify({ort: ort.env.versions.node, threads, median_ms: median,
                              images_per_s: dims[0] * 1000 / median}));
})().catch((e) => { console.error(e); process.exit(1); });
