#!/usr/bin/env bash
# The `micro` part of run_eval.sh: three of the paper's micro-benchmarks on ONE simulated GPU
# (H200 profile set), each on its own scenario family (sim/scenarios/micro-*.json, made by
# benchmarks/eval/micro_scenarios.py):
#   Fig. 15(a) prefix batching: K = 1..10 ResNet-50 variants, nexus vs --ablate prefix, SLO 50 and 100 ms;
#   Fig. 14 GPU multiplexing: 4 GoogLeNet copies, nexus vs tfserving, triton, clipper, SLO 50/100/200 ms;
#   Fig. 9 early vs lazy drop: one ResNet-50, nexus vs --ablate early_drop, SLO 15/25/50/100 ms.
# Each point is nexus-sim --find-max-throughput (>= 99% good) for seeds NEXUS_MICRO_SEEDS
# (default 1 2 3); every ratio is taken between two runs of the same seed in this invocation.
#
#   benchmarks/eval/micro.sh SIM OUT
# Writes OUT/micro-fig15-prefix.json, micro-fig14-multiplex.json, micro-fig9-earlydrop.json (the
# command, the machine and every run, without the per-session detail), micro-summary.md and one PNG per figure.
set -euo pipefail
SIM=$1
OUT=$2
SEEDS=${NEXUS_MICRO_SEEDS:-1 2 3}
say() { echo "[eval $(date -u +%H:%M:%S)] $*" >&2; }
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# run SCENARIO SYSTEM ABLATE(none|feature) >> file: one JSON line, one simulation at a time.
run() {
  local ab=()
  [ "$3" != none ] && ab=(--ablate "$3")
  for seed in $SEEDS; do
    nice -n 10 "$SIM" --workload "sim/scenarios/$1.json" --gpus 1 --system "$2" "${ab[@]}" --seed "$seed" \
      --find-max-throughput --quiet |
      jq -c --arg sc "$1" '{scenario: $sc, system, ablate, seed, gpus, profiles, executor, noise,
        slo_ms: ($sc | capture("slo(?<s>[0-9]+)").s | tonumber),
        k: (($sc | capture("-k(?<k>[0-9]+)$").k // null) | if . then tonumber else null end),
        max_throughput_rps, max_throughput_load_scale, good_rate, p99_latency_ms, device_busy,
        requests, per_query_good_rate, search: [.search[] | {load_scale, offered_rps, good_rate}]}'
  done
}

say "micro: Fig. 15(a) prefix batching (K = 1..10 ResNet-50 variants, 1 GPU)"
for slo in 50 100; do
  for k in 1 2 3 4 5 6 7 8 9 10; do
    for ab in none prefix; do run "micro-prefix-slo$slo-k$k" nexus $ab >> "$TMP/prefix.jsonl"; done
  done
done
say "micro: Fig. 14 GPU multiplexing (4 GoogLeNet copies, 1 GPU)"
for slo in 50 100 200; do
  for sys in nexus tfserving triton clipper; do run "micro-multiplex-slo$slo" $sys none >> "$TMP/mux.jsonl"; done
done
say "micro: Fig. 9 early vs lazy drop (one ResNet-50, 1 GPU)"
for slo in 15 25 50 100; do
  for ab in none early_drop; do run "micro-earlydrop-slo$slo" nexus $ab >> "$TMP/drop.jsonl"; done
done
# One file per figure: what made it, where, and every run.
wrap() {  # FIGURE < runs.jsonl
  jq -s --arg fig "$1" --arg seeds "$SEEDS" '{figure: $fig,
    command: "benchmarks/eval/run_eval.sh build benchmarks/results/sim micro (benchmarks/eval/micro.sh)",
    machine: "shared 2-core x86_64 box, no GPU (virtual time: the figures do not depend on the host)",
    gpus: 1, profiles: .[0].profiles, seeds: ($seeds | split(" ") | map(tonumber)), runs: .}'
}
wrap "paper Fig. 15(a), prefix batching" < "$TMP/prefix.jsonl" > "$OUT/micro-fig15-prefix.json"
wrap "paper Fig. 14, GPU multiplexing" < "$TMP/mux.jsonl" > "$OUT/micro-fig14-multiplex.json"
wrap "paper Fig. 9, early vs lazy drop" < "$TMP/drop.jsonl" > "$OUT/micro-fig9-earlydrop.json"

# ---- per point: mean max throughput over the seeds, and the ratio of each seed's run to the
# baseline run of the same seed (mean, min, max) -----------------------------------------------
# points FILE KEY-EXPR BASELINE-SELECT: [{key, system/ablate, mean, ratio_mean, ratio_min, ratio_max}]
points() {
  jq -c --argjson base "$2" '
    .runs
    | (map(select(.system == $base.system and .ablate == $base.ablate))
      | map({key: "\(.slo_ms)/\(.k)/\(.seed)", value: .max_throughput_rps}) | from_entries) as $b
    | group_by([.slo_ms, .k, .system, .ablate])[]
    | {slo_ms: .[0].slo_ms, k: .[0].k, system: .[0].system, ablate: .[0].ablate,
       mean: (map(.max_throughput_rps) | add / length),
       ratios: map(.max_throughput_rps / $b["\(.slo_ms)/\(.k)/\(.seed)"])}
    | . + {ratio_mean: (.ratios | add / length), ratio_min: (.ratios | min), ratio_max: (.ratios | max)}' "$1"
}
points "$OUT/micro-fig15-prefix.json" '{"system":"nexus","ablate":"prefix"}' > "$TMP/p15"
points "$OUT/micro-fig14-multiplex.json" '{"system":"tfserving","ablate":"none"}' > "$TMP/p14"
points "$OUT/micro-fig9-earlydrop.json" '{"system":"nexus","ablate":"early_drop"}' > "$TMP/p9"
# Nexus over Clipper as well (Fig. 14 gives both).
jq -s -c '(map(select(.system == "clipper")) | map({key: "\(.slo_ms)", value: .mean}) | from_entries) as $c
          | .[] | . + {vs_clipper: (.mean / $c["\(.slo_ms)"])}' "$TMP/p14" > "$TMP/p14c"
seeds_n=$(echo $SEEDS | wc -w)
r() { printf '%s' '(.ratio_mean * 100 | round / 100 | tostring) + "× (" + (.ratio_min * 100 | round / 100 | tostring) + "–" + (.ratio_max * 100 | round / 100 | tostring) + ")"'; }
{
  echo "# Micro-benchmarks (paper Figs. 9, 14, 15), 1 simulated GPU, H200 profiles"
  echo
  echo "Max req/s at >= 99% good, mean of seeds $SEEDS; ratio: each seed's run over the baseline run"
  echo "of the same seed (mean, min–max over $seeds_n seeds). Made by benchmarks/eval/micro.sh on the shared"
  echo "2-core x86_64 box, no GPU (virtual time: the figures do not depend on the host)."
  echo
  echo "## Fig. 15(a): prefix batching, K ResNet-50 variants (paper: +110% at K = 10)"
  echo
  echo "| SLO ms | K | prefix batching on | off (--ablate prefix) | on / off |"
  echo "| --- | --- | --- | --- | --- |"
  jq -s -r "group_by([.slo_ms, .k])[] | (map(select(.ablate == \"none\"))[0]) as \$on | (map(select(.ablate == \"prefix\"))[0]) as \$off
    | \"| \(\$on.slo_ms) | \(\$on.k) | \(\$on.mean | round) | \(\$off.mean | round) | \" + (\$on | $(r)) + \" |\"" "$TMP/p15"
  echo
  echo "## Fig. 14: GPU multiplexing, 4 GoogLeNet copies (paper: 1.4–2.1× over TF Serving, 1.9–9.8× over Clipper)"
  echo
  echo "| SLO ms | nexus | tfserving | triton | clipper | nexus / tfserving | nexus / clipper (of the means) |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  jq -s -r "group_by(.slo_ms)[] | (map({key: .system, value: .}) | from_entries) as \$s
    | \"| \(\$s.nexus.slo_ms) | \(\$s.nexus.mean | round) | \(\$s.tfserving.mean | round) | \(\$s.triton.mean | round) | \(\$s.clipper.mean | round) | \" + (\$s.nexus | $(r)) + \" | \(\$s.nexus.vs_clipper * 100 | round / 100)× |\"" "$TMP/p14c"
  echo
  echo "## Fig. 9: early vs lazy drop, one ResNet-50 (paper: up to +25%)"
  echo
  echo "| SLO ms | early drop | lazy drop (--ablate early_drop) | early / lazy |"
  echo "| --- | --- | --- | --- |"
  jq -s -r "group_by(.slo_ms)[] | (map(select(.ablate == \"none\"))[0]) as \$e | (map(select(.ablate == \"early_drop\"))[0]) as \$l
    | \"| \(\$e.slo_ms) | \(\$e.mean | round) | \(\$l.mean | round) | \" + (\$e | $(r)) + \" |\"" "$TMP/p9"
} > "$OUT/micro-summary.md"

if command -v gnuplot > /dev/null; then
  for slo in 50 100; do
    jq -s -r --argjson slo $slo 'map(select(.slo_ms == $slo)) | group_by(.k)[]
      | "\(.[0].k) \(map(select(.ablate == "none"))[0].mean) \(map(select(.ablate == "prefix"))[0].mean)"' "$TMP/p15" > "$TMP/f15-$slo.dat"
  done
  gnuplot <<GP
set terminal pngcairo size 720,480
set output "$OUT/micro-fig15-prefix.png"
set title "Fig. 15(a): K ResNet-50 variants, 1 simulated GPU (H200 set)\nmax throughput at >= 99% good, mean of seeds $SEEDS"
set xlabel "variants K"; set ylabel "requests/s (all variants)"; set yrange [0:*]; set xrange [0.5:10.5]; set xtics 1
set key below
plot "$TMP/f15-50.dat" using 1:2 with linespoints lw 2 title "prefix batching, SLO 50 ms", \
     "" using 1:3 with linespoints lw 2 title "no prefix batching, SLO 50 ms", \
     "$TMP/f15-100.dat" using 1:2 with linespoints dt 2 title "prefix batching, SLO 100 ms", \
     "" using 1:3 with linespoints dt 2 title "no prefix batching, SLO 100 ms"
GP
  jq -s -r 'group_by(.slo_ms)[] | (map({key: .system, value: .mean}) | from_entries) as $s
    | "\(.[0].slo_ms) \($s.nexus) \($s.tfserving) \($s.triton) \($s.clipper)"' "$TMP/p14" > "$TMP/f14.dat"
  gnuplot <<GP
set terminal pngcairo size 720,420
set output "$OUT/micro-fig14-multiplex.png"
set title "Fig. 14: 4 GoogLeNet copies, 1 simulated GPU (H200 set)\nmax throughput at >= 99% good, mean of seeds $SEEDS"
set xlabel "SLO (ms)"; set ylabel "requests/s (all copies)"; set yrange [0:*]
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.6; set key below
plot "$TMP/f14.dat" using 2:xtic(1) title "nexus (round robin)", "" using 3 title "tfserving (contend)", \
     "" using 4 title "triton (contend)", "" using 5 title "clipper"
GP
  jq -s -r 'group_by(.slo_ms)[] | "\(.[0].slo_ms) \(map(select(.ablate == "none"))[0].mean) \(map(select(.ablate == "early_drop"))[0].mean)"' \
    "$TMP/p9" > "$TMP/f9.dat"
  gnuplot <<GP
set terminal pngcairo size 720,420
set output "$OUT/micro-fig9-earlydrop.png"
set title "Fig. 9: one ResNet-50, Poisson, 1 simulated GPU (H200 set)\nmax throughput at >= 99% good, mean of seeds $SEEDS"
set xlabel "SLO (ms)"; set ylabel "requests/s"; set yrange [0:*]
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.6; set key below
plot "$TMP/f9.dat" using 2:xtic(1) title "early drop (sliding window)", "" using 3 title "lazy drop"
GP
fi
say "micro: done ($OUT/micro-*)"
