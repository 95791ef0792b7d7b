#!/bin/sh
# pruning_results.sh - measure channel pruning and write
# docs/pruning-results.md.  Rerunnable; every part of the grid is an
# option, so that a quick run and the full run use the same script.
#
#   bench/pruning_results.sh [--build DIR] [--model FILE] [--mitdb DIR]
#       [--settings general,personal,literal] [--keeps 0.75,0.5,0.3]
#       [--methods all|M1,M2] [--recon on,off] [--seeds 1,2,3,4,5]
#       [--records ds2|100,103] [--finetune] [--jobs N] [--tag NAME]
#       [--distill STEPS [--distill-lr X]]
#       [--out docs/pruning-results.md] [--raw DIR] [--from-raw]
#
# Run from the repository root.  Each setting runs bench_pruning (see
# bench/bench_pruning.c) in --jobs parallel processes, split by method,
# each single-threaded; their tab-separated lines are kept in --raw
# (default bench/results) as SETTING.TAG.JOB.tsv and every line there is
# aggregated over seeds (mean and standard deviation).  A run replaces
# only the files of its own --tag (default run), so runs with other tags
# (more seeds, another setting) add to the table; delete the --raw
# directory to start over.  --from-raw rebuilds the Markdown from the kept
# lines without measuring again.  The pruning-time goal is measured
# separately with `ecgprune prune` on 5 minutes of ECG and two BLAS
# threads.  A file notes.md in --raw, if present, is copied in as the
# "Observations" section (written by whoever ran the measurements).  Each
# setting also gets a figure, img/pruning-SETTING.svg beside --out, drawn
# by bench/pruning_plot.awk.  Lines in --raw/breakdown (same format) feed
# only the "Where the labels differ" tables: they are seed-1 reruns made
# when bench_pruning gained its last two columns, after the grid had run;
# delete them once the grid itself has been rerun.  With --distill, the
# refitted models are also distilled (docs/pruning.md) and their lines say
# "distill" as refit; the tables then show them as a refit of their own.
set -eu

build=build
model=models/default.safetensors
mitdb=../shared/data/mitdb
settings=general
keeps=0.75,0.5,0.3
methods=ising-kernel,ising-filter,l1,random,coreset,contrib
recon=on,off
seeds=1,2,3,4,5
records=ds2
finetune=
distill=
jobs=2
out=docs/pruning-results.md
raw=bench/results
tag=run
from_raw=
command_line="bench/pruning_results.sh $*"

while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift ;;
    --model) model=$2; shift ;;
    --mitdb) mitdb=$2; shift ;;
    --settings) settings=$2; shift ;;
    --keeps) keeps=$2; shift ;;
    --methods) methods=$2; shift ;;
    --recon) recon=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --records) records=$2; shift ;;
    --finetune) finetune=--finetune ;;
    --distill) distill="$distill --distill $2"; shift ;;
    --distill-lr) distill="$distill --distill-lr $2"; shift ;;
    --jobs) jobs=$2; shift ;;
    --out) out=$2; shift ;;
    --raw) raw=$2; shift ;;
    --tag) tag=$2; shift ;;
    --from-raw) from_raw=1 ;;
    *) echo "pruning_results.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$methods" = all ]; then
    methods=ising-kernel,ising-filter,l1,random,coreset,contrib
fi
bench=$build/bench/bench_pruning
ecgprune=$build/clients/ecgprune
mkdir -p "$raw"

# ---- measuring -------------------------------------------------------------

# One setting: deal the methods out to the jobs, run them in parallel.
measure_setting() {
    setting=$1
    pids=
    slot=0
    while [ $slot -lt "$jobs" ]; do
        mine=$(echo "$methods" | tr ',' '\n' |
            awk -v j=$slot -v n="$jobs" '(NR - 1) % n == j' | paste -sd, -)
        if [ -n "$mine" ]; then
            # shellcheck disable=SC2086
            OPENBLAS_NUM_THREADS=1 "$bench" --model "$model" \
                --mitdb "$mitdb" --setting "$setting" --keeps "$keeps" \
                --methods "$mine" --recon "$recon" --seeds "$seeds" \
                --records "$records" $finetune $distill \
                > "$raw/$setting.$tag.$slot.tsv" \
                2> "$raw/$setting.$tag.$slot.log" &
            pids="$pids $!"
        fi
        slot=$((slot + 1))
    done
    for pid in $pids; do
        wait "$pid" || { echo "bench_pruning failed, see $raw" >&2; exit 1; }
    done
}

# Speed: the unpruned and an l1-pruned model in turns on record 100.
measure_speed() {
    OPENBLAS_NUM_THREADS=1 "$bench" --model "$model" --mitdb "$mitdb" \
        --setting speed --keeps "$keeps" --records 100 \
        > "$raw/speed.tsv" 2> "$raw/speed.log"
}

# The pruning-time goal: the model on 5 minutes of ECG, two BLAS threads
# (PRUNE_THREADS to change).
measure_prune_time() {
    threads=${PRUNE_THREADS:-2}
    start=$(date +%s.%N)
    OPENBLAS_NUM_THREADS=$threads "$ecgprune" prune "$model" \
        --calib "$mitdb/101:0-300" --method ising-kernel --keep 0.5 \
        --out "$raw/timing.safetensors" > "$raw/timing.txt" 2>/dev/null
    end=$(date +%s.%N)
    echo "$start $end $threads" | awk '{ printf "%.2f %d\n", $2 - $1, $3 }' \
        > "$raw/prune_seconds"
    rm -f "$raw/timing.safetensors"
}

if [ -z "$from_raw" ]; then
    test -x "$bench" || { echo "build $bench first" >&2; exit 1; }
    test -f "$model" || { echo "no model $model" >&2; exit 1; }
    started=$(date -u '+%Y-%m-%d %H:%M UTC')
    for setting in $(echo "$settings" | tr ',' ' '); do
        rm -f "$raw/$setting.$tag".*.tsv
        measure_setting "$setting"
    done
    measure_speed
    measure_prune_time
    {
        echo "run $tag: $command_line"
        echo "  from $started to $(date -u '+%H:%M UTC'), $(nproc) cores," \
            "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
    } >> "$raw/runs.txt"
fi

# ---- the Markdown ----------------------------------------------------------

# The measured lines of one setting without their headers, by keep
# (largest first), method, refit (on first) and seed.
rows() {
    tail -q -n +2 "$raw/$1".*.tsv |
        sort -t "$(printf '\t')" -k3,3r -k4,4 -k5,5r -k6,6n
}

# Aggregate the lines of one setting over seeds into a table.
table() {
    rows "$1" | awk -F '\t' -v want="$1" -v stage="$2" '
    $1 != want || $2 != stage { next }
    $4 == "none" {
        if (!($6 in base_seen)) { base_seen[$6] = 1; base_sum += $11; nb++ }
        base_params = $7; base_macs = $8; next
    }
    {
        key = $3 "\t" $4 "\t" $5
        if (!(key in n)) order[++keys] = key
        n[key]++
        params[key] = $7; macs[key] = $8; prune[key] += $18
        add(key, 2, $11); add(key, 3, $16)
        add(key, 4, $17); add(key, 5, $12); add(key, 6, $13)
        add(key, 7, $14); add(key, 8, $15)
    }
    function add(k, i, v) { s[k, i] += v; q[k, i] += v * v }
    function mean(k, i) { return s[k, i] / n[k] }
    function sd(k, i,   m, v) {
        m = mean(k, i); v = q[k, i] / n[k] - m * m
        return v > 0 && n[k] > 1 ? sqrt(v * n[k] / (n[k] - 1)) : 0
    }
    END {
        if (keys == 0) { print "(not run)"; exit }
        base_f1 = base_sum / nb
        seeds_note = ""
        if (nb > 1) seeds_note = " (mean of " nb " fine-tuning seeds)"
        printf "Unpruned model: macro-F1 %.4f%s, %d parameters, %.4g MACs" \
               " per second of ECG.\n\n", base_f1, seeds_note,
               base_params, base_macs
        print "| keep | method | refit | seeds | params | MACs |" \
              " macro-F1 | vs unpruned (pts) | F1 N | F1 S | F1 V | F1 F |" \
              " agreement % | score error | prune s |"
        print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        for (i = 1; i <= keys; i++) {
            k = order[i]; split(k, f, "\t")
            printf "| %s | %s | %s | %d | %.3f | %.3f | %.4f +- %.4f |" \
                   " %+.2f | %.3f | %.3f | %.3f | %.3f | %.2f +- %.2f |" \
                   " %.4f +- %.4f | %.1f |\n",
                f[1], f[2], f[3], n[k], params[k] / base_params,
                macs[k] / base_macs, mean(k, 2), sd(k, 2),
                100 * (mean(k, 2) - base_f1), mean(k, 5), mean(k, 6),
                mean(k, 7), mean(k, 8), 100 * mean(k, 3), 100 * sd(k, 3),
                mean(k, 4), sd(k, 4), prune[k] / n[k]
        }
    }'
}

# Speed-up against the MAC reduction.
speed_table() {
    awk -F '\t' 'FNR == 1 { next } $4 == "none" { base_macs = $8; next } {
        red = 1 / ($8 / base_macs)
        printf "| %s | %.3f | %.2f | %.3f | %.3f | %.2f | %.2f | %s |\n",
            $3, $8 / base_macs, red, $10, $9, $10 / $9,
            ($10 / $9) / red, (($10 / $9) / red >= 0.8 ? "yes" : "**no**")
    }' "$raw/speed.tsv"
}

# Goals without fine-tuning, per method with refit, general setting.
goals() {
    rows "$1" | awk -F '\t' -v want="$1" '
    $1 != want || $2 != "pruned" { next }
    $4 == "none" { base = $11; next }
    ($5 == "on" || $5 == "distill") && ($3 == "0.75" || $3 == "0.50") {
        k = $3 "\t" $4 "\t" $5; n[k]++; f1[k] += $11; ag[k] += $16
        if (!(k in seen)) { seen[k] = 1; order[++m] = k }
    }
    END {
        if (m == 0) { print "(not run)"; exit }
        print "| keep | method | refit | seeds | macro-F1 vs unpruned (pts) |" \
              " agreement % | goal | met |"
        print "|---|---|---|---|---|---|---|---|"
        for (i = 1; i <= m; i++) {
            k = order[i]; split(k, f, "\t")
            d = 100 * (f1[k] / n[k] - base); a = 100 * ag[k] / n[k]
            if (f[1] == "0.75") {
                goal = "within 1 pt, >= 98 %"; ok = d >= -1 && a >= 98
            } else {
                goal = "within 3 pts, >= 95 %"; ok = d >= -3 && a >= 95
            }
            printf "| %s | %s | %s | %d | %+.2f | %.2f | %s | %s |\n",
                f[1], f[2], f[3], n[k], d, a, goal, ok ? "yes" : "**no**"
        }
    }'
}

# The goal with personal fine-tuning: each fine-tuned pruned model against
# the unpruned model fine-tuned the same way with the same seeds, on
# macro-F1 (in rows' order; rows() puts the unpruned lines, keep 1.00,
# first).
ftgoal() {
    rows "$1" | awk -F '\t' -v want="$1" '
    $1 != want || $2 != "finetuned" { next }
    $4 == "none" { base[$6] = $11; next }
    {
        k = $3 "\t" $4 "\t" $5; n[k]++; f1[k] += $11
        if (!($6 in base)) nobase[k] = 1
        b[k] += base[$6]
        if (!(k in seen)) { seen[k] = 1; order[++m] = k }
    }
    END {
        if (m == 0) { print "(not run)"; exit }
        print "| keep | method | refit | seeds | macro-F1 | unpruned" \
              " fine-tuned, same seeds | at least as good |"
        print "|---|---|---|---|---|---|---|"
        for (i = 1; i <= m; i++) {
            k = order[i]; split(k, f, "\t")
            if (k in nobase) {
                printf "| %s | %s | %s | %d | %.4f | (not run) | |\n",
                    f[1], f[2], f[3], n[k], f1[k] / n[k]
                continue
            }
            v = f1[k] / n[k]; w = b[k] / n[k]
            printf "| %s | %s | %s | %d | %.4f | %.4f | %s |\n", f[1],
                f[2], f[3], n[k], v, w, (v >= w ? "yes" : "**no**")
        }
    }'
}

# Ising against the baselines on the fidelity measures, per keep ratio
# (refit $2, i.e. on or distill; no fine-tuning): the best of each side by
# mean agreement and by mean score error.
versus() {
    rows "$1" | awk -F '\t' -v want="$1" -v refit="$2" '
    $1 != want || $2 != "pruned" || $4 == "none" || $5 != refit { next }
    {
        k = $3 "\t" $4; n[k]++; ag[k] += $16; er[k] += $17
        if (!(k in seen)) { seen[k] = 1; order[++m] = k }
        if (!($3 in kseen)) { kseen[$3] = 1; keeps[++nk] = $3 }
    }
    END {
        if (m == 0) { print "(not run)"; exit }
        print "| keep | best ising (agreement) | best baseline (agreement) |" \
              " best ising (score error) | best baseline (score error) |" \
              " fidelity winner |"
        print "|---|---|---|---|---|---|"
        for (j = 1; j <= nk; j++) {
            ia = ba = -1; ie = be = 1e9
            for (i = 1; i <= m; i++) {
                split(order[i], f, "\t")
                if (f[1] != keeps[j]) continue
                a = ag[order[i]] / n[order[i]]; e = er[order[i]] / n[order[i]]
                if (f[2] ~ /^ising/) {
                    if (a > ia) { ia = a; ian = f[2] }
                    if (e < ie) { ie = e; ien = f[2] }
                } else {
                    if (a > ba) { ba = a; ban = f[2] }
                    if (e < be) { be = e; ben = f[2] }
                }
            }
            if (ia < 0 || ba < 0) continue
            w = (ia >= ba && ie <= be) ? "ising" : \
                (ia < ba && ie > be) ? "**baseline (" ban ")**" : "split"
            printf "| %s | %s %.2f %% | %s %.2f %% | %s %.4f | %s %.4f | %s |\n",
                keeps[j], ian, 100 * ia, ban, 100 * ba, ien, ie, ben, be, w
        }
    }'
}

# Where the pruned and the unpruned labels differ, who is right (refit
# on): lines that carry the two breakdown columns, from the grid or from
# $raw/breakdown (seed-1 reruns made to add those columns).
breakdown() {
    lines=$({ rows "$1"; tail -q -n +2 "$raw/breakdown/$1".*.tsv \
        2>/dev/null; } | awk -F '\t' -v want="$1" '
    $1 == want && $2 == "pruned" && $4 != "none" &&
    ($5 == "on" || $5 == "distill") && NF >= 22 {
        k = $3 "\t" $4 "\t" $5; n[k]++; ag[k] += $16; rk[k] += $19
        fx[k] += $20; ss[k] += $21; sa[k] += $22
    }
    END {
        for (k in n) {
            split(k, f, "\t")
            printf "| %s | %s | %s | %d | %.2f | %.2f | %.1f | %.1f |" \
                   " %.2f |\n", f[1], f[2], f[3], n[k], 100 * ag[k] / n[k],
                100 * rk[k] / n[k], 100 * fx[k] / n[k], 100 * ss[k] / n[k],
                100 * sa[k] / n[k]
        }
    }' | sort -t '|' -k2,2r -k3,3 -k4,4r)
    if [ -z "$lines" ]; then
        printf '(not run)\n'
        return
    fi
    printf '| keep | method | refit | seeds | agreement %% |'
    printf ' unpruned-correct labels kept %% |'
    printf ' differing labels where the pruned model is right %% |'
    printf ' unpruned beats with confidence >= 0.9 %% |'
    printf ' agreement on those %% |\n'
    printf '|---|---|---|---|---|---|---|---|---|\n%s\n' "$lines"
}

# The figure of one setting, written beside the Markdown in img/ and
# linked from it (pruned models, refit on).
figure() {
    img_dir=$(dirname "$out")/img
    mkdir -p "$img_dir"
    rows "$1" | awk -F '\t' -v setting="$1" -v stage=pruned \
        -f "$(dirname "$0")/pruning_plot.awk" > "$img_dir/pruning-$1.svg.tmp"
    mv "$img_dir/pruning-$1.svg.tmp" "$img_dir/pruning-$1.svg"
    printf '![%s calibration: label agreement and macro-F1 against the ' "$1"
    printf 'MAC ratio, per method](img/pruning-%s.svg)\n\n' "$1"
}

{
    cat <<'EOF'
# Pruning results

Produced by `bench/pruning_results.sh` (measurements by
`bench/bench_pruning.c`); rerun it to reproduce.  The method is described
in [pruning.md](pruning.md).  Numbers are as measured, misses included.

## What was run

EOF
    if [ -f "$raw/runs.txt" ]; then
        sed 's/^/    /' "$raw/runs.txt"
    fi
    cat <<'EOF'

- Test data: the DS2 records of the MIT-BIH Arrhythmia Database (de Chazal
  et al. 2004), MLII lead, scored beat by beat as ANSI/AAMI EC57 does
  (150 ms match window); macro-F1 is the mean F1 of N, S, V and F.
- *general*: one pruned model per configuration, calibrated on 30 s (from
  minute 5) of each DS1 record, 64 windows of which half centred on non-N
  beats; tested on the whole of each DS2 record.
- *personal*: per DS2 record, calibrated on its first 5 minutes, tested on
  the remaining 25; *finetuned* rows fine-tune both the pruned and the
  unpruned model on the same 5 minutes first.
- *literal*: as *general*, but with `--prune-head-input`, the spec's
  grouping in which the channels the classifier reads are pruned too (the
  default keeps them; see pruning.md).  Measured with an earlier run of
  this script whose lines were relabelled (`--settings literal` measures
  it anew).
- params, MACs: the pruned model's over the unpruned one's (the unpruned
  count includes the BN statistics that pruning folds away).  Speed is
  measured separately (next section): the grid's runs share the cores, so
  their timings are not comparable with each other.
- agreement: beats of the unpruned model that the pruned one finds within
  150 ms with the same label.  score error: relative error of the
  per-sample class probabilities against the unpruned model's.
- refit *distill*: the least-squares refit followed by 200 steps of
  distillation towards the unpruned model on the same calibration windows
  (`--distill 200`; docs/pruning.md; not in the spec), seed 1, for the
  methods and keep ratios listed.
- Mean +- standard deviation over seeds; `l1` and `contrib` are
  deterministic and run once.

EOF
    printf '## Inference speed\n\n'
    if [ -f "$raw/speed.tsv" ]; then
        printf 'Network time (ep_infer_probabilities) on the 30 minutes of '
        printf 'record 100, one\nthread; the unpruned model and an l1-pruned '
        printf 'one alternate run by run, fastest of\nfive runs each.  Goal: '
        printf 'speed-up >= 0.8 of the MAC reduction.\n\n'
        printf '| keep | MACs | MAC reduction | unpruned s | pruned s |'
        printf ' speed-up | speed-up / MAC reduction | goal met |\n'
        printf '|---|---|---|---|---|---|---|---|\n'
        speed_table
        printf '\n'
    else
        printf '(not run)\n\n'
    fi
    printf '## Pruning time\n\n'
    if [ -f "$raw/prune_seconds" ]; then
        awk '{ printf "`ecgprune prune`, ising-kernel, keep 0.5, 5 minutes " \
               "of record 101, %d BLAS\nthread(s): %.2f s wall-clock " \
               "(goal: under 10 s on two cores).\n\n", $2, $1 }' \
            "$raw/prune_seconds"
    else
        printf '(not run)\n\n'
    fi
    for setting in general personal literal; do
        for stage in pruned finetuned; do
            ls "$raw/$setting".*.tsv > /dev/null 2>&1 || continue
            grep -q "^$setting	$stage	" "$raw/$setting".*.tsv || continue
            printf '## %s calibration, %s\n\n' "$setting" "$stage"
            if [ "$stage" = pruned ]; then
                figure "$setting"
            fi
            table "$setting" "$stage"
            printf '\n'
        done
        if ls "$raw/$setting".*.tsv > /dev/null 2>&1; then
            printf '### Goals without fine-tuning (%s)\n\n' "$setting"
            goals "$setting"
            if grep -q "^$setting	finetuned	" "$raw/$setting".*.tsv; then
                printf '\n### Goal with personal fine-tuning (%s)\n\n' \
                    "$setting"
                printf 'The goal is stated at keep 0.5 (at least as good '
                printf 'as the unpruned model\nfine-tuned the same way); '
                printf 'the other keep ratios are measured beside it.\n\n'
                ftgoal "$setting"
            fi
            printf '\n### Ising against the baselines (%s)\n\n' "$setting"
            versus "$setting" on
            if grep -q "^$setting	pruned	[^	]*	[^	]*	distill" \
                "$raw/$setting".*.tsv; then
                printf '\nThe same with distillation after the refit (only '
                printf 'the methods and keep\nratios run with it):\n\n'
                versus "$setting" distill
            fi
            printf '\n### Where the labels differ (%s)\n\n' "$setting"
            printf 'Of the beats the unpruned model labels as the '
            printf 'cardiologists did (nearest\nannotation within 150 ms), '
            printf 'the share the pruned model labels the same;\nof the '
            printf 'beats whose label changed, the share where the pruned '
            printf 'model now\nagrees with the annotation; then the '
            printf 'share of the unpruned model'"'"'s beats\nwhose label '
            printf 'it gives with confidence >= 0.9 (its class'"'"'s share of '
            printf 'the\nmean class probabilities over the beat), and the '
            printf 'agreement on those.\n\n'
            breakdown "$setting"
            printf '\n'
        fi
    done
    if [ -f "$raw/notes.md" ]; then
        printf '## Observations\n\n'
        cat "$raw/notes.md"
    fi
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
