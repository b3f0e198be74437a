#!/usr/bin/env bash
# The tiny release (docs/recipe.md sections 16-17), from nothing, on a 2-core CPU: data, the local-codes tokenizer,
# the decoder, the refiner, a candidate release in runs/cand-tiny, and its evaluation against the shipped
# checkpoint on the same prompts and seeds. Run it again after any stop: every trainer continues its checkpoint
# (--resume gives the same losses as an unbroken run) and a finished step is skipped, so a session that ends
# mid-run loses at most the steps since the last checkpoint. The diffusion baseline is the shipped one (same
# caption tokenizer, 18,016 s; the README's "AR against diffusion" section has its training command).
#
#   bash docs/release_tiny.sh [MINUTES]     # MINUTES: how long this call may train the decoder (default 150)
#
# It stops after the evaluation: copying the candidate to checkpoints/tiny is a decision taken by reading
# runs/eval-release/paired.json, not something a script should do by itself.
#
# Since 2d14db5 checkpoints/tiny *is* this script's release, so step 1 would copy it as "shipped" and step 7
# would compare it with itself. To repeat the published comparison, put the previous release there first:
#   mkdir -p runs && git archive 82582d5 checkpoints/tiny | tar -x -C runs && mv runs/checkpoints/tiny runs/shipped
set -euo pipefail
MINUTES=${1:-150}
EVAL=runs/eval-release

# finished RUN PRESET: true when RUN/training.json records the preset's max_steps (a stopped run records fewer)
finished() {
    python - "$1" "$2" <<'PY'
import json, sys
from pathlib import Path
run, preset = Path(sys.argv[1]), sys.argv[2]
done = json.loads((run / "training.json").read_text())["steps"] if (run / "training.json").exists() else -1
wanted = json.loads(Path(preset).read_text())["train"]["max_steps"] if Path(preset).exists() else None
sys.exit(0 if wanted is not None and done >= wanted else 1)
PY
}

# 1. inputs: the shipped checkpoint, kept apart from the folder t2i release rewrites, and its baseline as a run
mkdir -p runs
[ -d runs/shipped ] || cp -r checkpoints/tiny runs/shipped
if [ ! -d runs/shipped-baseline ]; then
    mkdir -p runs/shipped-baseline
    cp -r runs/shipped/baseline runs/shipped-baseline/model
    cp -r runs/shipped/caption_tokenizer runs/shipped-baseline/
    python -c "import json; t = json.load(open('runs/shipped/training.json')); \
json.dump(t['baseline'], open('runs/shipped-baseline/training.json', 'w'), indent=2)"
fi

# 2. data: 150,000 training scenes (about a minute per 50,000)
[ -f data/tiny-50k-s4/train-00009.tar ] || t2i data make --preset tiny --num 50000 --seed 4 --out data/tiny-50k-s4 --shard-size 5000
[ -f data/tiny-100k-s3/train-00019.tar ] || t2i data make --preset tiny --num 100000 --seed 3 --out data/tiny-100k-s3 --shard-size 5000

# 3. the tokenizer (5,500 steps, about 1,550 s)
finished runs/vq-channel-norm configs/vq/ablation/tiny-channel-norm.json \
    || t2i train vq --preset configs/vq/ablation/tiny-channel-norm.json --data data/tiny-50k-s4 --out runs/vq-channel-norm --resume

# 4. the decoder (11,500 steps, 0.86-1.7 s each alone by machine, after 9 minutes of encoding: several sessions)
if ! finished runs/rel-local configs/ar/tiny-local.json; then
    t2i train ar --preset configs/ar/tiny-local.json --vq runs/vq-channel-norm/model \
        --caption-tokenizer runs/shipped/caption_tokenizer \
        --data 'data/tiny-100k-s3/train-{00000..00019}.tar,data/tiny-50k-s4/train-{00000..00009}.tar' \
        --out runs/rel-local --max-minutes "$MINUTES" --resume
    finished runs/rel-local configs/ar/tiny-local.json || { echo "decoder not finished: run this script again"; exit 0; }
fi

# 5. the refiner on the new tokenizer's codes (3,500 steps, about an hour on one thread)
finished runs/refiner-local configs/refiner/tiny.json \
    || OMP_NUM_THREADS=1 t2i train refiner --preset tiny --vq runs/vq-channel-norm/model --data data/tiny-50k-s4 \
        --out runs/refiner-local --resume

# 6. the candidate release, fp16, sampling defaults from recipe 17 (T 0.7, top-k 20, guidance 1.5)
[ -f runs/cand-tiny/pipeline.json ] \
    || t2i release --checkpoint runs/rel-local/pipeline --refiner runs/refiner-local/model \
        --diffusion runs/shipped-baseline/model --default-sampler sample --default-top-k 20 \
        --default-temperature 0.7 --default-guidance-scale 1.5 --out runs/cand-tiny

# 7. evaluation: 400 new prompts (seed 37) and 50 held-out words, one image each at seed 1000, both checkpoints
#    with no sampling flags (their recorded defaults); the candidate also greedy and beam 4
mkdir -p "$EVAL"
t2i prompts --category all --num 50 --seed 37 > "$EVAL/p37.txt"
t2i prompts --category text --num 50 --seed 1 --words heldout > "$EVAL/heldout.txt"
score() {  # score NAME PROMPTS CHECKPOINT [generate flags...]
    local name=$1 prompts=$2 ckpt=$3; shift 3
    [ -f "$EVAL/$name.json" ] && return 0
    t2i generate --prompts "$prompts" --out-dir "$EVAL/$name" --checkpoint "$ckpt" --seed 1000 --quiet "$@"
    t2i score --images "$EVAL/$name" --prompts "$prompts" --out "$EVAL/$name.json"
}
score shipped-p37 "$EVAL/p37.txt" runs/shipped
score cand-p37 "$EVAL/p37.txt" runs/cand-tiny
score shipped-heldout "$EVAL/heldout.txt" runs/shipped
score cand-heldout "$EVAL/heldout.txt" runs/cand-tiny
score cand-p37-greedy "$EVAL/p37.txt" runs/cand-tiny --sampler greedy
score cand-p37-beam4 "$EVAL/p37.txt" runs/cand-tiny --sampler beam --beam-width 4
t2i score --paired "$EVAL/shipped-p37.json" "$EVAL/cand-p37.json" --out "$EVAL/paired.json"
[ -f "$EVAL/cand-eval-ar.json" ] || t2i eval ar --checkpoint runs/cand-tiny --num-scenes 200 \
    --prompts-per-category 0 --word-scenes 50 --colour-scenes 200 --seed 0 --quiet --out "$EVAL/cand-eval-ar.json"
# teacher-forced loss on 500 unseen scenes and on the first 500 training scenes (memorising?)
[ -d data/heldout-500 ] || t2i data make --preset tiny --num 500 --seed 99 --out data/heldout-500
[ -d data/train4-500 ] || t2i data make --preset tiny --num 500 --seed 4 --out data/train4-500
[ -f "$EVAL/cand-loss-heldout.json" ] || t2i eval loss --checkpoint runs/cand-tiny --data data/heldout-500 --out "$EVAL/cand-loss-heldout.json"
[ -f "$EVAL/cand-loss-train.json" ] || t2i eval loss --checkpoint runs/cand-tiny --data data/train4-500 --out "$EVAL/cand-loss-train.json"
echo "evaluation in $EVAL; the paired comparison (candidate - shipped):"
cat "$EVAL/paired.json"
