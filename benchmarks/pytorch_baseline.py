#!/usr/bin/env python3
"""PyTorch baseline for benchmarks/gpu_backend: the same five architectures with random weights,
eager and CUDA-graph throughput per (model, precision, batch), as JSON rows that gpu_backend
merges with --pytorch FILE.

Setup as a tuned PyTorch deployment would use it: torch.backends.cudnn.benchmark = True,
channels_last, model.eval() under torch.inference_mode(), FP16 via .half() (no autocast), no
TF32 for FP32 (matching the CudaBackend's FP32 path). Each timed iteration does what a
CudaBackend::run() does: a pinned host input -> device, the forward pass, the outputs -> host,
synchronize. "graphs" captures the forward pass once per batch size (torch.cuda.CUDAGraph) and
replays it.

Models: torchvision's resnet50, vgg16 and googlenet (aux_logits=False, no input transform);
MobileNetV1 and SSD-MobileNetV1-300 are not in torchvision and are defined here the way
include/nexus/model/zoo/standard.hpp builds them (MobileNetV1 width 1.0 with ReLU6; SSD with 4
extra layers and box/class heads on 6 maps, 3,6,6,6,6,6 anchors, 91 classes, no decoding/NMS).

--compile resnet50:1,resnet50:32 also measures torch.compile(mode="reduce-overhead") (Inductor +
CUDA Graphs, the one-line PyTorch deployment the issue names as the next bar) for those
(model, batch) pairs in FP16, adding pytorch_compile_img_s, pytorch_compile_latency_ms_p50 and
pytorch_compile_seconds (compile + warm-up) to the FP16 row; it costs ~15-25 s per pair.

Usage: python3 benchmarks/pytorch_baseline.py [--gpu 0] [--models ...] [--batches 1,2,4,...]
       [--precisions fp16,fp32] [--iters 50] [--warmup 5] [--compile m:b,...] [--out pytorch.json]
Writes a JSON array (to --out, else stdout). Exits 0 with a message when no GPU is present.
"""
import argparse
import json
import sys
import time


def conv_bn(nn, cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


def conv_dw(nn, cin, cout, stride):
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
        nn.ReLU6(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


MOBILENET_CFG = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
                 (256, 512, 2), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1),
                 (512, 512, 1), (512, 1024, 2), (1024, 1024, 1)]


def make_models(torch, torchvision):
    nn = torch.nn

    class MobileNetV1(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            layers = [conv_bn(nn, 3, 32, 2)] + [conv_dw(nn, a, b, s) for a, b, s in MOBILENET_CFG]
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(1024, classes)

        def forward(self, x):
            x = self.features(x)
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
            return torch.softmax(self.fc(x), dim=1)

    class SSDMobileNetV1(nn.Module):
        def __init__(self, classes=91):
            super().__init__()
            layers = [conv_bn(nn, 3, 32, 2)] + [conv_dw(nn, a, b, s) for a, b, s in MOBILENET_CFG]
            self.to_conv11 = nn.Sequential(*layers[:12])   # 512 x 19 x 19
            self.to_conv13 = nn.Sequential(*layers[12:])   # 1024 x 10 x 10

            def extra(cin, mid, cout):
                return nn.Sequential(nn.Conv2d(cin, mid, 1), nn.ReLU6(inplace=True),
                                     nn.Conv2d(mid, cout, 3, 2, 1), nn.ReLU6(inplace=True))
            self.extras = nn.ModuleList([extra(1024, 256, 512), extra(512, 128, 256),
                                         extra(256, 128, 256), extra(256, 64, 128)])
            chans = [512, 1024, 512, 256, 256, 128]
            anchors = [3, 6, 6, 6, 6, 6]
            self.box = nn.ModuleList([nn.Conv2d(c, a * 4, 1) for c, a in zip(chans, anchors)])
            self.cls = nn.ModuleList([nn.Conv2d(c, a * classes, 1)
                                      for c, a in zip(chans, anchors)])

        def forward(self, x):
            f11 = self.to_conv11(x)
            f = self.to_conv13(f11)
            maps = [f11, f]
            for e in self.extras:
                f = e(f)
                maps.append(f)
            return ([b(m) for b, m in zip(self.box, maps)] +
                    [c(m) for c, m in zip(self.cls, maps)])

    class Softmaxed(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.softmax(self.net(x), dim=1)

    tv = torchvision.models
    return {
        "resnet50": (lambda: Softmaxed(tv.resnet50(weights=None)), 224),
        "mobilenet_v1": (lambda: MobileNetV1(), 224),
        "vgg16": (lambda: Softmaxed(tv.vgg16(weights=None)), 224),
        "googlenet": (lambda: Softmaxed(tv.googlenet(weights=None, aux_logits=False,
                                                     init_weights=True,
                                                     transform_input=False)), 224),
        "ssd_mobilenet_v1_300": (lambda: SSDMobileNetV1(), 300),
    }


def as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def measure(torch, step, batch, iters, warmup):
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    ms = []
    start = time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
    total = time.perf_counter() - start
    return batch * iters / total, percentile(ms, 0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--models", default="resnet50,mobilenet_v1,vgg16,googlenet,"
                                        "ssd_mobilenet_v1_300")
    ap.add_argument("--batches", default="1,2,4,8,16,32,64")
    ap.add_argument("--precisions", default="fp16,fp32")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", default="")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    compile_pairs = set()
    for item in [c for c in args.compile.split(",") if c]:
        m, b = item.split(":")
        compile_pairs.add((m, int(b)))
    try:
        import torch
        import torchvision
    except ImportError as e:
        print(f"pytorch_baseline: PyTorch/torchvision not installed ({e}); nothing to measure",
              file=sys.stderr)
        return 0
    if not torch.cuda.is_available():
        print("pytorch_baseline: no CUDA device found; nothing to measure", file=sys.stderr)
        return 0

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda", args.gpu)
    torch.cuda.set_device(device)
    gpu_name = torch.cuda.get_device_name(device)
    models = make_models(torch, torchvision)
    batches = [int(b) for b in args.batches.split(",") if b]
    rows = []
    torch.manual_seed(1)
    for name in [m for m in args.models.split(",") if m]:
        factory, size = models[name]
        for prec in [p for p in args.precisions.split(",") if p]:
            dtype = torch.float16 if prec == "fp16" else torch.float32
            model = factory().eval().to(device=device, dtype=dtype,
                                        memory_format=torch.channels_last)
            for batch in batches:
                host_in = torch.randn(batch, 3, size, size).to(dtype).pin_memory()
                dev_in = torch.empty_like(host_in, device=device).contiguous(
                    memory_format=torch.channels_last)
                with torch.inference_mode():
                    def eager():
                        dev_in.copy_(host_in, non_blocking=True)
                        outs = [o.to("cpu", non_blocking=True) for o in as_list(model(dev_in))]
                        torch.cuda.synchronize()
                        return outs
                    eager_img_s, _ = measure(torch, eager, batch, args.iters, args.warmup)

                    # CUDA graph: warm up on a side stream, capture, then replay.
                    side = torch.cuda.Stream()
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        for _ in range(3):
                            model(dev_in)
                    torch.cuda.current_stream().wait_stream(side)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        static_out = as_list(model(dev_in))

                    def replay():
                        dev_in.copy_(host_in, non_blocking=True)
                        graph.replay()
                        outs = [o.to("cpu", non_blocking=True) for o in static_out]
                        torch.cuda.synchronize()
                        return outs
                    graphs_img_s, graphs_p50 = measure(torch, replay, batch, args.iters,
                                                       args.warmup)
                    del graph, static_out
                row = {"gpu": gpu_name, "model": name, "precision": prec, "batch": batch,
                       "pytorch_eager_img_s": eager_img_s,
                       "pytorch_graphs_img_s": graphs_img_s,
                       "pytorch_graphs_latency_ms_p50": graphs_p50}
                if prec == "fp16" and (name, batch) in compile_pairs:
                    t0 = time.perf_counter()
                    compiled = torch.compile(model, mode="reduce-overhead")
                    with torch.inference_mode():
                        for _ in range(3):
                            compiled(dev_in)
                        torch.cuda.synchronize()
                        compile_s = time.perf_counter() - t0

                        def compiled_step():
                            dev_in.copy_(host_in, non_blocking=True)
                            outs = [o.to("cpu", non_blocking=True)
                                    for o in as_list(compiled(dev_in))]
                            torch.cuda.synchronize()
                            return outs
                        c_img_s, c_p50 = measure(torch, compiled_step, batch, args.iters,
                                                 args.warmup)
                    row.update({"pytorch_compile_img_s": c_img_s,
                                "pytorch_compile_latency_ms_p50": c_p50,
                                "pytorch_compile_seconds": compile_s})
                    del compiled
                rows.append(row)
                print(json.dumps(rows[-1]), file=sys.stderr)
            del model
            torch.cuda.empty_cache()
    text = json.dumps(rows, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
