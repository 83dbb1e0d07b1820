#!/usr/bin/env bash
# The paper's evaluation (§8) in the cluster simulator: runs nexus-sim on the shipped scenarios
# and writes JSON + PNG plots (gnuplot) into OUT (default benchmarks/results/sim).
#
#   benchmarks/eval/run_eval.sh [BUILD_DIR] [OUT] [PARTS]
#   PARTS: any of maxtput ablation clockwork diurnal speed micro qa (default: all), comma separated.
#   micro: the paper's micro-benchmarks (Figs. 9, 14, 15) on one simulated GPU, benchmarks/eval/micro.sh
#   (NEXUS_MICRO_SEEDS, default 1 2 3); writes OUT/micro-*.
#   qa: the micro-benchmarks of paper Figs. 17 (query DP vs even split, CPU set, 8 devices) and
#   16 (squishy vs batch-oblivious, H200 set, 16 GPUs), seeds 1-3 (NEXUS_QA_SEEDS): writes
#   qa-fig17.json, squishy-fig16.json and their PNGs (docs/evaluation.md, "Micro-benchmarks").
#   NEXUS_EVAL_SCENARIOS: the scenarios of maxtput and ablation (default: all of them below;
#   the H200 set, then the CPU set sim/profiles/cpu-2core-2026-11-30).
#
# One simulation at a time (the box is shared). Every JSON names its scenario, and every
# scenario names its profile folder. docs/evaluation.md shows the plots and the commands.
set -euo pipefail
BUILD=${1:-build}
OUT=${2:-benchmarks/results/sim}
PARTS=${3:-maxtput,ablation,clockwork,diurnal,speed,micro,qa}
SIM="$BUILD/tools/nexus-sim"
DUR=${NEXUS_EVAL_DURATION:-10}
mkdir -p "$OUT"
SCENARIOS=${NEXUS_EVAL_SCENARIOS:-traffic traffic-rush-hour game game-cpu traffic-cpu}
has() { [[ ",$PARTS," == *",$1,"* ]]; }
# Nexus features switched off one at a time (duty_cycle = paced, the paper's schedule); prefix
# only where the scenario declares shared prefixes (game).
ablations_of() { if [[ "$1" == game* ]]; then echo squishy query_dp early_drop duty_cycle prefix all;
                 else echo squishy query_dp early_drop duty_cycle all; fi; }
load() { cut -d' ' -f1 /proc/loadavg; }
say() { echo "[eval $(date -u +%H:%M:%S)] $*" >&2; }

if has maxtput; then
  for sc in $SCENARIOS; do
    for sys in nexus clipper tfserving triton; do
      say "max throughput: $sc $sys (16 GPUs)"
      "$SIM" --workload sim/scenarios/$sc.json --gpus 16 --system $sys --duration "$DUR" \
        --find-max-throughput --quiet > "$OUT/maxtput-$sc-$sys.json"
    done
  done
fi
if has ablation; then
  for sc in $SCENARIOS; do
    [ "$sc" = traffic-rush-hour ] && continue
    for ab in $(ablations_of $sc); do
      say "ablation: $sc without $ab"
      "$SIM" --workload sim/scenarios/$sc.json --gpus 16 --system nexus --ablate $ab --duration "$DUR" \
        --find-max-throughput --quiet > "$OUT/ablation-$sc-$ab.json" ||
        { rm -f "$OUT/ablation-$sc-$ab.json"; say "  (not available: see the message above)"; }
    done
  done
fi
if has clockwork; then
  for sys in nexus clipper tfserving triton; do
    say "clockwork SLO sweep: $sys (16 GPUs)"
    "$SIM" --workload sim/scenarios/clockwork-slo-sweep.json --gpus 16 --system $sys --duration "$DUR" \
      --find-max-throughput --quiet > "$OUT/maxtput-clockwork-slo-sweep-$sys.json"
  done
  say "clockwork SLO sweep: nexus paced (--ablate duty_cycle)"
  "$SIM" --workload sim/scenarios/clockwork-slo-sweep.json --gpus 16 --system nexus --ablate duty_cycle \
    --duration "$DUR" --find-max-throughput --quiet > "$OUT/ablation-clockwork-slo-sweep-duty_cycle.json"
fi
if has diurnal; then
  say "diurnal: 100 GPUs, nexus"
  "$SIM" --workload sim/scenarios/diurnal-100gpu.json --gpus 100 --system nexus --sample 10 --quiet \
    > "$OUT/diurnal-100gpu-nexus.json"
fi
if has qa; then
  # Paper Fig. 17 (query analysis): X = ResNet-50 -> Y = face recognizer on the CPU set, fan-out
  # gamma in {0.1, 1, 10}, whole-query SLO 300/400/500 ms; Nexus (QueryPlanner DP) against
  # --ablate query_dp (even split), 8 devices. Paper Fig. 16 (squishy scheduling): five mixes on
  # the H200 set (sim/scenarios/gen_squishy_mixes.py), Nexus against --ablate squishy
  # (batch-oblivious allocator), 16 GPUs. Each run's scenario duration; one run at a time.
  QA_SEEDS=${NEXUS_QA_SEEDS:-1 2 3}
  qa_run() {  # scenario gpus seed ablate(or none) -> one compact JSON line
    local ab=(); [ "$4" != none ] && ab=(--ablate "$4")
    "$SIM" --workload "sim/scenarios/$1.json" --gpus "$2" --system nexus "${ab[@]}" --seed "$3" \
      --find-max-throughput --quiet |
      jq -c '{scenario, system, ablate, gpus, seed, max_throughput_rps, good_rate, p99_latency_ms,
              gpus_used_avg, lower_bound_gpus, profiles, duration_s,
              sessions: (.sessions | map_values({budget_ms, gpus_planned, planned_batch_max, mean_batch}))}'
  }
  : > "$OUT/.qa-fig17.jsonl"
  for g in 0.1 1 10; do for slo in 300 400 500; do for seed in $QA_SEEDS; do
    for ab in none query_dp; do
      say "qa fig17: gamma $g, SLO $slo ms, seed $seed, ablate $ab (8 devices)"
      qa_run "qa-fig17-g$g-slo$slo" 8 "$seed" "$ab" |
        jq -c --argjson g "$g" --argjson slo "$slo" '. + {gamma: $g, slo_ms: $slo}' >> "$OUT/.qa-fig17.jsonl"
    done
  done; done; done
  jq -s '{figure: "paper Fig. 17: query analysis (QueryPlanner DP vs even split)",
          machine: "shared 2-core x86_64 box, no GPU (virtual time)",
          command: "benchmarks/eval/run_eval.sh build benchmarks/results/sim qa", runs: .}' \
    "$OUT/.qa-fig17.jsonl" > "$OUT/qa-fig17.json"
  : > "$OUT/.squishy-fig16.jsonl"
  for mix in fixed slos rates zipf models; do for seed in $QA_SEEDS; do for ab in none squishy; do
    say "qa fig16: mix $mix, seed $seed, ablate $ab (16 GPUs)"
    qa_run "squishy-$mix" 16 "$seed" "$ab" | jq -c --arg m "$mix" '. + {mix: $m}' >> "$OUT/.squishy-fig16.jsonl"
  done; done; done
  jq -s '{figure: "paper Fig. 16: squishy scheduling vs the batch-oblivious allocator",
          machine: "shared 2-core x86_64 box, no GPU (virtual time)",
          command: "benchmarks/eval/run_eval.sh build benchmarks/results/sim qa", runs: .}' \
    "$OUT/.squishy-fig16.jsonl" > "$OUT/squishy-fig16.json"
  # Ratios (Nexus / ablated, same seed), then the median and range over the seeds.
  ratios='[.runs | group_by(KEY + [.seed])[] | {key: (.[0] | KEY), r: ((map(select(.ablate == "none"))[0].max_throughput_rps) / (map(select(.ablate != "none"))[0].max_throughput_rps))}]
          | group_by(.key)[] | (map(.r) | sort) as $r | {key: .[0].key, median: $r[(($r | length) / 2 | floor)], min: $r[0], max: $r[-1]}'
  jq -r "${ratios//KEY/[.gamma, .slo_ms]}"' | "\(.key[0]) \(.key[1]) \(.median) \(.min) \(.max)"' "$OUT/qa-fig17.json" > "$OUT/.qa-fig17.dat"
  # In the paper's order, with the paper's ratio where the notes give one (fixed 1.11, Zipf 1.64).
  jq -r '["fixed", "slos", "rates", "zipf", "models"] as $o | {fixed: 1.11, zipf: 1.64} as $p
         | ['"${ratios//KEY/[.mix]}"'] | sort_by(.key[0] as $m | $o | index($m))[]
         | "\(.key[0]) \(.median) \(.min) \(.max) \($p[.key[0]] // "NaN")"' "$OUT/squishy-fig16.json" > "$OUT/.squishy-fig16.dat"
  if command -v gnuplot > /dev/null; then
    for slo in 300 400 500; do awk -v s=$slo '$2 == s' "$OUT/.qa-fig17.dat" > "$OUT/.qa-fig17-$slo.dat"; done
    gnuplot <<GP
set terminal pngcairo size 720,420
set output "$OUT/qa-fig17.png"
set title "Fig. 17: query DP vs even split, ResNet-50 -> face rec. (CPU set, 8 devices)\nmax throughput ratio at >= 99% good, median of seeds (bars: min-max)\npaper: 1.13-1.55, largest at gamma 10, 300 ms"
set ylabel "DP / even split"; set xlabel "fan-out gamma"; set yrange [0.8:*]; set key top right
set style data histogram; set style histogram errorbars gap 1 lw 1; set style fill solid 0.6
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2
plot "$OUT/.qa-fig17-300.dat" using 3:4:5:xtic(1) title "SLO 300 ms", "$OUT/.qa-fig17-400.dat" using 3:4:5 title "400 ms", "$OUT/.qa-fig17-500.dat" using 3:4:5 title "500 ms"
GP
    gnuplot <<GP
set terminal pngcairo size 720,420
set output "$OUT/squishy-fig16.png"
set title "Fig. 16: squishy packing vs batch-oblivious allocator (H200 set, 16 GPUs)\nmax throughput ratio at >= 99% good, median of seeds (bars: min-max)"
set ylabel "squishy / batch-oblivious"; set yrange [0:*]; set key top left
set style data histogram; set style histogram errorbars gap 1 lw 1; set style fill solid 0.6
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2
plot "$OUT/.squishy-fig16.dat" using 2:3:4:xtic(1) title "ours (median of seeds)", "" using 5:5:5 title "paper (fixed, Zipf)"
GP
  fi
  cat "$OUT/.qa-fig17.dat" "$OUT/.squishy-fig16.dat" >&2  # ratio: median min max (the docs' table)
  rm -f "$OUT"/.qa-fig17*.dat "$OUT"/.qa-fig17.jsonl "$OUT"/.squishy-fig16.dat "$OUT"/.squishy-fig16.jsonl
fi
if has speed; then
  : > "$OUT/speed.jsonl"
  # The same load per GPU at every size (N/1000 of the mix), ~0.54 M requests each; then 1,000
  # GPUs for 12 s (1.6 M requests: start-up planning amortised), three times. The box's 1-minute load average
  # before each run is recorded: the wall figure depends on what else runs.
  run_speed() {  # gpus duration
    local l; l=$(load)
    "$SIM" --workload sim/scenarios/cluster-1000gpu.json --gpus "$1" --scale "$(echo "$1/1000" | bc -l)" \
      --duration "$2" --quiet |
      jq -c --arg load "$l" '{gpus, duration_s, requests: .requests.submitted_incl_warmup,
              stage_items: .requests.stage_items_run, good_rate, cpu_s: .sim.cpu_s, wall_s: .sim.wall_s,
              requests_per_cpu_s: .sim.simulated_requests_per_cpu_s,
              requests_per_wall_s: .sim.simulated_requests_per_wall_s,
              machine: "shared 2-core x86_64 box, no GPU", load_avg_1min: ($load | tonumber)}' >> "$OUT/speed.jsonl"
  }
  for g in 16 100 300 1000; do
    say "speed: $g GPUs"
    run_speed $g "$(echo "d=4000/$g; if (d<2) 2 else d" | bc -l)"
  done
  for rep in 1 2 3; do  # repeated: on a shared box the spread is the figure's error bar
    say "speed: 1000 GPUs, 12 s (run $rep of 3)"
    run_speed 1000 12
  done
fi
if has micro; then
  bash "$(dirname "$0")/micro.sh" "$SIM" "$OUT"
fi

# ---- summary and plots ---------------------------------------------------------------------
say "summary + plots"
jq -s '[.[] | {scenario, system, ablate, gpus, max_throughput_rps, good_rate, p99_latency_ms,
               gpus_used_avg, lower_bound_gpus, lower_bound_gpus_at_mean_latency, lower_bound_gpus_of_plan, profiles}]' "$OUT"/maxtput-*.json "$OUT"/ablation-*.json \
  > "$OUT/summary.json" 2>/dev/null || true
# A table a person reads: max throughput per system and scenario, with the ratio to the best baseline.
{
  echo "| scenario | system | ablate | max req/s at >= 99% good | vs best baseline | good rate at max | p99 ms | lower bound GPUs (planning / mean latency / plan's own) |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  for f in "$OUT"/maxtput-*.json "$OUT"/ablation-*.json; do [ -s "$f" ] && cat "$f"; done | jq -s -r '
    (map(select(.system != "nexus")) | group_by(.scenario) | map({key: .[0].scenario, value: (map(.max_throughput_rps) | max)}) | from_entries) as $best
    | sort_by(.scenario, (.system != "nexus"), (.ablate != "none"), .ablate)[]
    | "| \(.scenario) | \(.system) | \(.ablate) | \(.max_throughput_rps | floor) | \(if $best[.scenario] then ((.max_throughput_rps / $best[.scenario] * 100 | floor) / 100 | tostring) + "x" else "-" end) | \(.good_rate * 10000 | floor / 100) % | \(.p99_latency_ms) | \(.lower_bound_gpus * 100 | floor / 100) / \((.lower_bound_gpus_at_mean_latency // 0) * 100 | floor / 100) / \((.lower_bound_gpus_of_plan // 0) * 100 | floor / 100) |"'
} > "$OUT/summary.md"
if command -v gnuplot > /dev/null; then
  # Max throughput per system (one bar cluster per scenario).
  for sc in traffic traffic-rush-hour game game-cpu traffic-cpu clockwork-slo-sweep; do
    ls "$OUT"/maxtput-$sc-*.json > /dev/null 2>&1 || continue
    for sys in nexus clipper tfserving triton; do
      f="$OUT/maxtput-$sc-$sys.json"; [ -f "$f" ] && echo "$sys $(jq .max_throughput_rps "$f")"
    done > "$OUT/.bars-$sc.dat"
    gnuplot <<GP
set terminal pngcairo size 640,400
set output "$OUT/maxtput-$sc.png"
set title "$sc: max throughput at >= 99% good, 16 simulated devices"
set ylabel "requests/s"; set style fill solid 0.6; set boxwidth 0.6; set yrange [0:*]; unset key
plot "$OUT/.bars-$sc.dat" using 0:2:xtic(1) with boxes, "" using 0:2:(sprintf("%.0f",\$2)) with labels offset 0,1
GP
    # Good rate vs offered load (the bisection's runs).
    for sys in nexus clipper tfserving triton; do
      f="$OUT/maxtput-$sc-$sys.json"; [ -f "$f" ] && jq -r '.search | sort_by(.offered_rps)[] | "\(.offered_rps) \(.good_rate*100)"' "$f" > "$OUT/.curve-$sc-$sys.dat"
    done
    gnuplot <<GP
set terminal pngcairo size 640,400
set output "$OUT/goodrate-$sc.png"
set title "$sc: good rate vs offered load, 16 simulated devices"
set xlabel "offered requests/s"; set ylabel "good rate (%)"; set yrange [80:100.5]; set key bottom left
set arrow from graph 0, first 99 to graph 1, first 99 nohead dt 2
plot for [s in "nexus clipper tfserving triton"] "$OUT/.curve-$sc-".s.".dat" using 1:2 with linespoints title s
GP
  done
  # Ablation bars.
  for sc in traffic game game-cpu traffic-cpu; do
    [ -f "$OUT/maxtput-$sc-nexus.json" ] || continue
    { echo "nexus $(jq .max_throughput_rps "$OUT/maxtput-$sc-nexus.json")"
      for ab in $(ablations_of $sc); do
        f="$OUT/ablation-$sc-$ab.json"; lab="-${ab//_/-}"; [ $ab = duty_cycle ] && lab=paced
        [ -s "$f" ] && echo "$lab $(jq .max_throughput_rps "$f")"
      done; } > "$OUT/.ablation-$sc.dat"
    gnuplot <<GP
set terminal pngcairo size 800,400
set output "$OUT/ablation-$sc.png"
set title "$sc: Nexus with a feature off (-x) or paced, max throughput at >= 99% good (16 devices)"
set ylabel "requests/s"; set style fill solid 0.6; set boxwidth 0.6; set yrange [0:*]; unset key
plot "$OUT/.ablation-$sc.dat" using 0:2:xtic(1) with boxes, "" using 0:2:(sprintf("%.0f",\$2)) with labels offset 0,1
GP
  done
  # Diurnal: GPUs used vs the lower bound, and the bad rate, over time.
  if [ -f "$OUT/diurnal-100gpu-nexus.json" ]; then
    jq -r '.samples[] | "\(.t_s) \(.gpus_used) \(.lower_bound_gpus) \(.bad_rate*100) \(.offered_rps) \(.lower_bound_gpus_at_mean_latency)"' \
      "$OUT/diurnal-100gpu-nexus.json" > "$OUT/.diurnal.dat"
    gnuplot <<GP
set terminal pngcairo size 800,450
set output "$OUT/diurnal-100gpu.png"
set title "diurnal, 100 simulated GPUs (TITAN X profiles): GPUs used vs lower bound"
set xlabel "virtual time (s)"; set ylabel "GPUs"; set y2label "bad rate (%)"; set y2tics; set ytics nomirror
set key top left; set y2range [0:*]
plot "$OUT/.diurnal.dat" using 1:2 with steps title "GPUs used (plan)", \
     "" using 1:3 with lines title "lower bound (planning latency)", \
     "" using 1:6 with lines dt 2 title "lower bound (mean latency)", \
     "" using 1:4 axes x1y2 with impulses title "bad rate %"
GP
  fi
fi
rm -f "$OUT"/.bars-*.dat "$OUT"/.curve-*.dat "$OUT"/.ablation-*.dat "$OUT"/.diurnal.dat
say "done: $OUT"
