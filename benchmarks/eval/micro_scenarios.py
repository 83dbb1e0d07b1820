#!/usr/bin/env python3
"""Writes the micro-benchmark scenario families sim/scenarios/micro-*.json (paper Figs. 9, 14, 15).

    python3 benchmarks/eval/micro_scenarios.py [OUT_DIR]   (default sim/scenarios)

The files are shipped; this script is how they were made (rerun it after changing a setup here).
Every family uses the H200 profile set (sim/profiles/h200-2026-11-30), the shipped scenarios'
realistic noise, and ONE simulated GPU (run with --gpus 1). docs/evaluation.md, "Micro-benchmarks
(paper Figs. 9, 14, 15)", explains each choice:

- micro-prefix-slo{50,100}-k{1..10}: Fig. 15(a). K ResNet-50 variants that declare one shared
  prefix (key resnet50, 98% of ℓ(b), as game.json), each its own query at the same Poisson rate,
  50 ms SLO (the game's) or 100 ms. --ablate prefix runs the same K variants without prefix batching.
- micro-multiplex-slo{50,100,200}: Fig. 14. 4 copies of GoogLeNet (Inception v1, the paper's
  Inception) at equal Poisson rates; nexus vs tfserving, triton and clipper.
- micro-earlydrop-slo{15,25,50,100}: Fig. 9. One ResNet-50 under Poisson load; early drop (the
  default) vs --ablate early_drop.
"""
import json
import os
import sys

PROFILES = "../profiles/h200-2026-11-30"
NOISE = {"distribution": "lognormal", "min_cv": 0.05, "slow_probability": 0.001, "slow_factor": 3}
SYSTEMS = {"tfserving": {"max_batch": 32, "batch_timeout_ms": 5},
           "triton": {"preferred_batch_sizes": [8, 16, 32], "max_queue_delay_ms": 5}}


def scenario(name, description, models, queries):
    return {"name": name, "description": description, "profiles": PROFILES,
            "latency_model": {"std_k": 1.0, "factor": 1.0}, "noise": NOISE,
            "duration_s": 10, "warmup_s": 2, "epoch_s": 10,
            "models": models, "queries": queries, "systems": SYSTEMS}


def query(name, model, slo_ms, rate_rps):
    return {"name": name, "slo_ms": slo_ms, "stages": [{"name": "infer", "model": model}],
            "streams": 1, "arrival": "poisson", "rate_rps": rate_rps}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "sim/scenarios"
    files = {}
    # Fig. 15(a): K variants, 50 req/s each at scale 1 (the bisection scales all of them alike),
    # at the game's 50 ms SLO and at a looser 100 ms.
    for slo, k in ((slo, k) for slo in (50, 100) for k in range(1, 11)):
        models = [{"name": f"resnet50_v{i}", "profile": "resnet50@h200-fp16.json",
                   "prefix": {"key": "resnet50", "fraction": 0.98}} for i in range(k)]
        queries = [query(f"variant_v{i}", f"resnet50_v{i}", slo, 50) for i in range(k)]
        files[f"micro-prefix-slo{slo}-k{k}"] = scenario(
            f"micro-prefix-slo{slo}-k{k}",
            f"Paper Fig. 15(a), prefix batching: {k} ResNet-50 variant(s) on one GPU, declaring one shared "
            "prefix (key resnet50, 98% of ℓ(b): all but the retrained last layer, paper §6.3), each its own "
            f"query, Poisson at the same rate (50 req/s at scale 1), {slo} ms SLO (game analysis's is 50). Run with "
            "--gpus 1; --ablate prefix for the same variants without prefix batching. H200 profiles.",
            models, queries)
    # Fig. 14: 4 copies of GoogLeNet on one GPU.
    for slo in (50, 100, 200):
        models = [{"name": f"googlenet_c{i}", "profile": "googlenet@h200-fp16.json"} for i in range(4)]
        queries = [query(f"copy_c{i}", f"googlenet_c{i}", slo, 250) for i in range(4)]
        files[f"micro-multiplex-slo{slo}"] = scenario(
            f"micro-multiplex-slo{slo}",
            f"Paper Fig. 14, GPU multiplexing: 4 copies of GoogLeNet (Inception v1, the paper's Inception) "
            f"on one GPU, each its own model and query, Poisson at the same rate (250 req/s at scale 1), "
            f"{slo} ms SLO. Run with --gpus 1: nexus (round robin) vs tfserving and triton (co-located "
            "models contend) and clipper. H200 profiles.",
            models, queries)
    # Fig. 9: one ResNet-50, Poisson, tight SLOs.
    for slo in (15, 25, 50, 100):
        files[f"micro-earlydrop-slo{slo}"] = scenario(
            f"micro-earlydrop-slo{slo}",
            f"Paper Fig. 9, early vs lazy drop: one ResNet-50 on one GPU, Poisson (500 req/s at scale 1), "
            f"{slo} ms SLO. Run with --gpus 1; --ablate early_drop for the lazy drop. H200 profiles.",
            [{"name": "resnet50", "profile": "resnet50@h200-fp16.json"}],
            [query("classify", "resnet50", slo, 500)])
    for name, sc in files.items():
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(sc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
