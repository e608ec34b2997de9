#!/usr/bin/python3
"""bench/report_layers.py OUTDIR: the markdown report of bench/layers.sh."""
import json
import os
import sys

from report import load  # the JSONL reader of bench/report.py


def acc(r):
    s = r.get("summary", {})
    v = s.get("final_test_acc")
    return None if v is None else 100 * v


def secs(r):
    return r.get("summary", {}).get("epoch_s_median")


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def main():
    out = sys.argv[1]
    print(f"# plast layer benchmarks: {os.path.basename(out)}\n")
    print("```\n" + open(os.path.join(out, "env.txt")).read().strip() + "\n```\n")
    print("## Accuracy and time, Fashion-MNIST, batch 128, seed 0, 1 thread\n")
    print("(the accuracy bars are for 5 epochs)\n")
    print("| model | plast acc % | PyTorch acc % | bar | plast s/epoch | PyTorch s/epoch | ratio |")
    print("|---|---|---|---|---|---|---|")
    rows = [("CNN bp, SGD 0.1", "cnn_sgd_b128_t1", "cnn_sgd_b128_t1_best", -0.5),
            ("RNN bp, Adam 1e-3", "rnn_adam_b128_t1", "rnn_adam_b128_t1_best", -0.5),
            ("CNN drtp tanh, Adam 1e-3", "drtp_cnn_tanh_adam_b128_t1", None, None)]
    for label, p, t, margin in rows:
        rp = load(os.path.join(out, "plast", p + ".jsonl"))
        rt = load(os.path.join(out, "torch", t + ".jsonl")) if t else {"epochs": []}
        ap, at = acc(rp), acc(rt)
        if margin is not None and ap is not None and at is not None:
            bar = f">= {at + margin:.2f}: {'met' if ap >= at + margin else 'MISSED'}"
        elif t is None and ap is not None:
            bar = f">= 86: {'met' if ap >= 86 else 'MISSED'}"
        else:
            bar = "-"
        sp, st = secs(rp), secs(rt)
        ratio = f"{sp / st:.2f}" if sp and st else "-"
        print(f"| {label} | {fmt(ap)} | {fmt(at)} | {bar} | {fmt(sp, '.1f')} | {fmt(st, '.1f')} | {ratio} |")
    mc = json.load(open(os.path.join(out, "memcount_cnn.json")))
    print("\n## Memory: the CNN (tanh) at batch 1024, activations + input of one batch\n")
    print("| rule | tracker peak B | analytic B | tracker / analytic |")
    print("|---|---|---|---|")
    meas = {}
    for rule in ("bp", "drtp"):
        r = load(os.path.join(out, "plast", f"mem_cnn_{rule}_b1024.jsonl"))
        m = r["epochs"][0]["mem_peak_bytes"]["activations+input"] if r["epochs"] else None
        meas[rule] = m
        print(f"| {rule} | {m} | {mc[rule]} | {fmt(m / mc[rule] if m else None, '.4f')} |")
    if meas.get("bp") and meas.get("drtp"):
        print(f"\ndrtp / bp = {meas['drtp'] / meas['bp']:.3f}\n")


if __name__ == "__main__":
    main()
