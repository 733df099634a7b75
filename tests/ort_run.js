// Runs an ONNX model with onnxruntime (npm onnxruntime-node) on a raw float32 input file and prints
// {"logits": [...], "probabilities": [...]} as one JSON line (test_onnx.cpp reads it).
//   node ort_run.js MODEL.onnx INPUT.f32 N H W      (NODE_PATH: the node_modules holding onnxruntime-node)
const fs = require('fs');
const ort = require('onnxruntime-node');
(async () => {
  const [model, input, n, h, w] = process.argv.slice(2);
  const buf = fs.readFileSync(input);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const session = await ort.InferenceSession.create(model);
  const out = await session.run({input: new ort.Tensor('float32', x, [+n, 3, +h, +w])});
  console.log(JSON.stringify({logits: Array.from(out.logits.data), probabilities: Array.from(out.probabilities.data)}));
})().catch((e) => {
  console.error(String(e));
  process.exit(1);
});
