#!/usr/bin/env bash
# Every table of benchmarks/RESULTS.md, in the order it shows them; run from the repository root with the
# project's environment active. SWINFUSION=<path of a SwinFusion checkout> enables the
# SwinFusion comparison, SEAFUSION=<path of a VIF-Benchmark checkout> the SeAFusion timing.
set -euo pipefail
T=${THREADS:-2}
python benchmarks/bench_scaling.py --threads "$T"
python benchmarks/bench_flops.py --threads "$T" --size 480x640 --compile
python benchmarks/bench_flops.py --threads "$T" --size 480x640 --preset swinfusion --profile-rows 0
python benchmarks/bench_flops.py --threads 1 --size 480x640 --profile-rows 0
python benchmarks/bench_batch.py --threads "$T"
python benchmarks/bench_precision.py --threads "$T" --size 480x640
python benchmarks/bench_4k.py --threads "$T"
python benchmarks/bench_4k.py --threads "$T" --tile 1024 --check
if [ -n "${SWINFUSION:-}" ]; then
  python benchmarks/bench_vs_swinfusion.py --swinfusion "$SWINFUSION" --threads "$T" --size 480x640
fi
if [ -n "${SEAFUSION:-}" ]; then
  python benchmarks/bench_vs_seafusion.py --seafusion-root "$SEAFUSION" --threads "$T" --size 480x640
fi
