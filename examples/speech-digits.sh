#!/usr/bin/env bash
# Synthesizes a spoken-digits corpus with espeak-ng for the speech task: random strings of
# 3-7 digits read as words ("three one four") by several voices, speeds and pitches.
#
#   examples/speech-digits.sh OUT_DIR [UTTERANCES=600] [SEED=1]
#
# Writes OUT_DIR/wav/NNNNN.wav (mono 16-bit PCM at espeak-ng's 22050 Hz; the library
# resamples to 16 kHz as it reads them), OUT_DIR/train.csv and OUT_DIR/valid.csv
# (manifests: path,transcript). One utterance in ten is held out, and no held-out digit
# string is ever spoken in training, so validation measures recognizing new sequences.
# The same arguments give the same corpus. Needs espeak-ng (Debian/Ubuntu:
# `apt-get install espeak-ng`).
set -euo pipefail

usage() {
    echo "usage: $0 OUT_DIR [UTTERANCES=600] [SEED=1]" >&2
    exit 2
}
[[ $# -ge 1 && $# -le 3 ]] || usage
out=$1
count=${2:-600}
seed=${3:-1}
[[ $count =~ ^[0-9]+$ && $count -ge 2 ]] || { echo "UTTERANCES must be an integer ≥ 2, got '$count'" >&2; exit 2; }
[[ $seed =~ ^[0-9]+$ ]] || { echo "SEED must be a non-negative integer, got '$seed'" >&2; exit 2; }

if ! command -v espeak-ng >/dev/null; then
    echo "espeak-ng not found; install it (Debian/Ubuntu: apt-get install espeak-ng)" >&2
    exit 1
fi

words=(zero one two three four five six seven eight nine)
voices=(en en-us en-gb-scotland en-gb-x-rp en+f2 en+f3 en+f4 en+m3 en+m7 en-us+f3 en-us+m5)
RANDOM=$seed

# Sets $text to a random string of 3-7 digits spoken as words. (Not a $(...) function:
# a subshell reseeds RANDOM, which would make the corpus differ run to run.)
digits() {
    local n=$((3 + RANDOM % 5)) i
    text=""
    for ((i = 0; i < n; i++)); do
        text+="${text:+ }${words[RANDOM % 10]}"
    done
}

valid_count=$((count / 10 > 0 ? count / 10 : 1))
declare -A held_out=()
texts=()
for ((i = 0; i < valid_count; i++)); do
    digits
    held_out[$text]=1
    texts+=("$text")
done
while ((${#texts[@]} < count)); do
    digits
    [[ -n ${held_out[$text]+x} ]] || texts+=("$text")
done

mkdir -p "$out/wav"
echo "path,transcript" >"$out/valid.csv.tmp"
echo "path,transcript" >"$out/train.csv.tmp"
for ((i = 0; i < count; i++)); do
    name=$(printf 'wav/%05d.wav' "$i")
    voice=${voices[RANDOM % ${#voices[@]}]}
    speed=$((130 + RANDOM % 71)) # words per minute, 130-200
    pitch=$((25 + RANDOM % 51))  # 0-99, espeak-ng's default is 50
    espeak-ng -v "$voice" -s "$speed" -p "$pitch" -w "$out/$name" "${texts[i]}"
    if ((i < valid_count)); then manifest=valid; else manifest=train; fi
    echo "$name,${texts[i]}" >>"$out/$manifest.csv.tmp"
done
mv "$out/valid.csv.tmp" "$out/valid.csv"
mv "$out/train.csv.tmp" "$out/train.csv"

echo "wrote $count utterances: $((count - valid_count)) in $out/train.csv, $valid_count held out in $out/valid.csv"
echo "train on them with:"
echo "  wgpu-rnn train --task speech --manifest $out/train.csv --validation-manifest $out/valid.csv --cell gru --bidirectional --hidden 96 --batch 16 --steps 1500 --eval-every 250 --save digits.safetensors"
