#!/usr/bin/env python3
"""Writes the squishy-scheduling micro-benchmark scenarios (paper Fig. 16; notes §2.4):
five workload mixes, each a set of single-stage queries (one session per model) on the H200
profile set, compared as `nexus-sim --system nexus` against `--ablate squishy` (the
batch-oblivious allocator) on 16 simulated GPUs by benchmarks/eval/run_eval.sh (part `qa`).

    python3 sim/scenarios/gen_squishy_mixes.py        # rewrites sim/scenarios/squishy-*.json

Deterministic (no randomness: SLOs and rates follow closed forms), so the committed JSON is
exactly what this script writes. The mixes:
  fixed        10 ResNet-50 instances, 100 ms SLO, equal rates
  slos         10 ResNet-50 instances, SLOs 20..200 ms (geometric), equal rates
  rates        10 ResNet-50 instances, 100 ms SLO, rates 1x..10x (linear)
  zipf         50 ResNet-50 instances, 100 ms SLO, Zipf rates (rank k gets 1/k)
  models       8 models (ResNet-50, GoogleNet, MobileNet, SSD-MobileNet, face detector,
               age/gender, face recognition, face landmarks), 100 ms SLO, equal rates
Each model is its own instance (its own name and session, the shared profile's batching), as
in the Clockwork sweep; no prefixes are declared.
"""
import json
import os

H200 = "../profiles/h200-2026-11-30"
HERE = os.path.dirname(os.path.abspath(__file__))
NOISE = {"distribution": "lognormal", "min_cv": 0.05, "slow_probability": 0.001, "slow_factor": 3}
MODELS = ["resnet50", "googlenet", "mobilenet_v1", "ssd_mobilenet_v1_300", "face_detector",
          "age_gender", "face_recognition", "face_landmarks"]


def scenario(name, what, sessions, total_rps):
    """sessions: list of (model_profile, slo_ms, weight); rates = total_rps * weight / sum."""
    wsum = sum(w for _, _, w in sessions)
    models, queries = [], []
    for i, (prof, slo, w) in enumerate(sessions):
        m = f"{prof}_{i:02d}"
        models.append({"name": m, "profile": f"{prof}@h200-fp16.json"})
        queries.append({"name": f"{m}_slo{slo:g}ms", "slo_ms": slo,
                        "stages": [{"name": "infer", "model": m}],
                        "streams": 1, "arrival": "poisson",
                        "rate_rps": round(total_rps * w / wsum, 3)})
    return {
        "name": name,
        "description": f"Squishy scheduling micro-benchmark (paper Fig. 16), mix '{what}'. "
                       "H200 profile set (sim/profiles/h200-2026-11-30). Compare nexus with "
                       "--ablate squishy (batch-oblivious allocator) on 16 GPUs. Written by "
                       "sim/scenarios/gen_squishy_mixes.py.",
        "profiles": H200,
        "latency_model": {"std_k": 1.0, "factor": 1.15},
        "noise": NOISE,
        "duration_s": 10, "warmup_s": 2, "epoch_s": 5,
        "models": models, "queries": queries,
    }


def main():
    n = 10
    mixes = {
        "squishy-fixed": ("fixed models and SLOs: 10 ResNet-50, 100 ms, equal rates",
                          [("resnet50", 100, 1)] * n, 12000),
        "squishy-slos": ("varied SLOs: 10 ResNet-50, 20..200 ms geometric, equal rates",
                         [("resnet50", round(20 * 10 ** (i / (n - 1)), 1), 1) for i in range(n)], 10000),
        "squishy-rates": ("varied rates: 10 ResNet-50, 100 ms, rates 1x..10x",
                          [("resnet50", 100, i + 1) for i in range(n)], 12000),
        "squishy-zipf": ("Zipf rates: 50 ResNet-50, 100 ms, rank k gets 1/k",
                         [("resnet50", 100, 1 / (k + 1)) for k in range(50)], 12000),
        "squishy-models": ("a mix of models: 8 models, 100 ms, equal rates",
                           [(m, 100, 1) for m in MODELS], 20000),
    }
    for name, (what, sessions, total) in mixes.items():
        path = os.path.join(HERE, name + ".json")
        with open(path, "w") as f:
            json.dump(scenario(name, what, sessions, total), f, indent=1)
            f.write("\n")
        print(path)


if __name__ == "__main__":
    main()
