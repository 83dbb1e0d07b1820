#!/usr/bin/env python3
"""gpu_report.py RESULTS_DIR: the summary of one scripts/gpu_check.sh run (issue 9's bars).

Reads what gpu_check.sh wrote into RESULTS_DIR (cuda_tests.txt, cuda_onnx_node_tests.txt,
nexus_gpu_backend.jsonl merged with pytorch.json, ncu_<model>_fp16_b32.csv, serving.jsonl, pytorch_compile.json) and writes
  summary.md    tables: tests, throughput vs PyTorch (+ CUDA Graphs, + torch.compile), batch-1
                latency, per-kernel tables with the share of Nexus's own kernels, serving
  summary.json  the same figures, plus kernels_<model>_fp16_b32.txt per-kernel tables.
Standard library only (runs on the GPU machine's python3). Missing inputs are reported as such.
"""
import csv
import io
import json
import os
import re
import sys


def read_jsonl(path):
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def number(text):
    return float(text.replace(",", "")) if text else 0.0


def kernel_table(csv_path):
    """Per-kernel GPU time from ncu --csv --metrics gpu__time_duration.sum (ns)."""
    if not os.path.exists(csv_path):
        return None
    with open(csv_path, errors="replace") as f:
        text = f.read()
    start = text.find('"ID"')
    if start < 0:
        return None
    per = {}
    for row in csv.DictReader(io.StringIO(text[start:])):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = row.get("Kernel Name", "?")
        ns = number(row.get("Metric Value", "0"))
        unit = row.get("Metric Unit", "ns")
        scale = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6,
                 "s": 1e9, "second": 1e9}.get(unit, 1.0)
        t, n = per.get(name, (0.0, 0))
        per[name] = (t + ns * scale, n + 1)
    total = sum(t for t, _ in per.values())
    rows = sorted(((t, n, k) for k, (t, n) in per.items()), reverse=True)
    own = sum(t for t, _, k in rows if "nexus::" in k)
    return {"total_ms": total / 1e6, "launches": sum(n for _, n, _ in rows),
            "own_ms": own / 1e6, "own_share": own / total if total else 0.0,
            "kernels": [{"name": k, "ms": t / 1e6, "share": t / total if total else 0.0,
                         "launches": n} for t, n, k in rows]}


def main():
    res = sys.argv[1]
    out = {"dir": os.path.basename(res.rstrip("/"))}
    md = [f"# GPU check {out['dir']}", ""]
    env = ""
    if os.path.exists(os.path.join(res, "env.txt")):
        env = open(os.path.join(res, "env.txt")).read()
    gpu = re.search(r"^gpu: (.*)$", env, re.M)
    commit = re.search(r"^commit: (.*)$", env, re.M)
    out["gpu"] = gpu.group(1) if gpu else "?"
    out["commit"] = commit.group(1) if commit else "?"
    md += [f"GPU: **{out['gpu']}**, commit `{out['commit']}`. Produced by scripts/gpu_check.sh.", ""]

    # tests
    tests = os.path.join(res, "cuda_tests.txt")
    md += ["## tests/cuda", ""]
    if os.path.exists(tests):
        text = open(tests, errors="replace").read()
        errs = [float(x) for x in re.findall(r"relative error ([0-9.e+-]+)", text)]
        fails = re.findall(r"^.*failed: .*$", text, re.M)
        last = text.strip().splitlines()[-1] if text.strip() else "(empty)"
        out["tests"] = {"summary": last, "comparisons": len(errs), "failed_lines": fails[:20]}
        md += [f"- {last}", f"- {len(errs)} output comparisons logged"]
        md += [f"- `{f.strip()[:200]}`" for f in fails[:10]]
    else:
        md += ["- not run"]
    md.append("")

    # ONNX node tests on the CudaBackend (step 2b)
    onnx_tests = os.path.join(res, "cuda_onnx_node_tests.txt")
    md += ["## ONNX node tests on the CudaBackend (FP32, FP16)", ""]
    if os.path.exists(onnx_tests):
        text = open(onnx_tests, errors="replace").read()
        summaries = re.findall(r"^ONNX node tests on the CudaBackend.*$", text, re.M)
        bad = re.findall(r"^(?:FAIL|REFUSED) .*$", text, re.M)
        never = re.findall(r"^op .* none on the GPU$", text, re.M)
        out["onnx_node_tests"] = {"summary": summaries or ["(no summary line)"],
                                  "fail_or_refused": bad[:50], "ops_never_passing": never}
        md += [f"- {x}" for x in summaries] or ["- (no summary line: see the file)"]
        md += [f"- `{b.strip()[:200]}`" for b in bad[:20]]
        md += [f"- {n}" for n in never]
    else:
        md += ["- not run"]
    md.append("")

    # throughput
    rows = read_jsonl(os.path.join(res, "nexus_gpu_backend.jsonl"))
    compile_rows = {(r["model"], r["batch"]): r for r in (read_json(os.path.join(res, "pytorch_compile.json")) or [])
                    if "pytorch_compile_img_s" in r}
    out["throughput"] = rows
    md += ["## Throughput, host to host (img/s)", "",
           "| model | precision | batch | input | Nexus | PyTorch eager | PyTorch + CUDA Graphs | Nexus / Graphs | torch.compile | Nexus p50 ms | Graphs p50 ms | conv paths | load s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        g = r.get("pytorch_graphs_img_s")
        ratio = f"{r['nexus_img_s'] / g:.2f}x" if g else "—"
        c = compile_rows.get((r["model"], r["batch"]))
        comp = f"{c['pytorch_compile_img_s']:,.0f}" if c else "—"
        r["nexus_over_graphs"] = r["nexus_img_s"] / g if g else None
        fmt = lambda v, spec: format(v, spec) if isinstance(v, (int, float)) else "—"
        paths = ", ".join(f"{k} {v}" for k, v in sorted((r.get("conv_paths") or {}).items()))
        md.append(f"| {r['model']} | {r.get('precision', '?')} | {r['batch']} | {r.get('input', '?')} | {r['nexus_img_s']:,.0f} | "
                  f"{fmt(r.get('pytorch_eager_img_s'), ',.0f')} | {fmt(g, ',.0f')} | {ratio} | {comp} | "
                  f"{r['nexus_latency_ms_p50']:.3f} | {fmt(r.get('pytorch_graphs_latency_ms_p50'), '.3f')} | "
                  f"{paths} | {fmt(r.get('load_s'), '.1f')} |")
    if not rows:
        md.append("| (no rows: see nexus_gpu_backend.log) |")
    md.append("")

    # kernels
    md += ["## Per-kernel GPU time, one FP16 batch of 32 (ncu, no CUDA Graph)", ""]
    out["kernels"] = {}
    for m in ("resnet50", "mobilenet_v1"):
        t = kernel_table(os.path.join(res, f"ncu_{m}_fp16_b32.csv"))
        out["kernels"][m] = t
        if not t:
            md += [f"- {m}: no table (see ncu_{m}.log)", ""]
            continue
        lines = [f"# {m} FP16 batch 32, one run() under ncu --metrics gpu__time_duration.sum ({out['gpu']})",
                 f"total kernel time {t['total_ms']:.3f} ms over {t['launches']} launches; "
                 f"Nexus's own kernels {t['own_ms']:.3f} ms ({100 * t['own_share']:.1f}%)"]
        for k in t["kernels"]:
            lines.append(f"{k['ms']:8.3f} ms {100 * k['share']:5.1f}% {k['launches']:4d}x  {k['name'][:110]}")
        with open(os.path.join(res, f"kernels_{m}_fp16_b32.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        md += [f"**{m}**: {t['total_ms']:.3f} ms over {t['launches']} launches; own kernels "
               f"{100 * t['own_share']:.1f}% (bar: <= 10% for ResNet-50)", "", "```"]
        md += lines[2:14] + ["```", ""]

    # serving
    serving = read_jsonl(os.path.join(res, "serving.jsonl"))
    out["serving"] = serving
    md += ["## Engine serving from the first request", ""]
    if serving:
        head = serving[0]
        md.append(f"Profile {head.get('points')}; planned capacity {head.get('capacity_rps_at_slo', 0):,.0f} req/s "
                  f"on {head.get('devices')} GPU(s); load_model (load + prepare of batches 1..{head.get('prepared_batches')}) "
                  f"{head.get('load_seconds', 0):.1f} s, {head.get('device_bytes', 0) / 2**20:,.0f} MiB.")
        md += ["", "| load | offered req/s | good | served req/s | dropped | failed |", "| --- | --- | --- | --- | --- | --- |"]
        for r in serving[1:]:
            md.append(f"| {100 * r['load_frac']:.0f}% | {r['offered_rps']:,.0f} | {100 * r['good_rate']:.1f}% | "
                      f"{r['served_rps']:,.0f} | {r['dropped']} | {r['failed']} |")
    else:
        md.append("- not run (see serving.log)")
    md.append("")
    with open(os.path.join(res, "summary.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(res, "summary.json"), "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
