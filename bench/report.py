#!/usr/bin/python3
"""bench/report.py OUTDIR: the markdown report of bench/run.sh."""
import glob
import json
import os
import sys


def load(path):
    recs = {"epochs": []}
    if not os.path.exists(path):
        return recs
    for line in open(path):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("type") == "epoch":
            recs["epochs"].append(d)
        elif "type" in d:
            recs[d["type"]] = d
    return recs


def pct(v):
    return "-" if v is None else f"{100 * v:.2f}"


def main():
    out = sys.argv[1]
    print(f"# plast benchmark: {os.path.basename(out)}\n")
    print("```\n" + open(os.path.join(out, "env.txt")).read().strip() + "\n```\n")
    print("## Accuracy (Fashion-MNIST, MLP 784-256-256-10 tanh, b128, seed 0, 1 thread)\n")
    print("| rule | epochs | test acc % @5 | final test acc % | bar | s/epoch median | act+input peak B |")
    print("|---|---|---|---|---|---|---|")
    bars = {"bp": 0.87, "drtp": 0.84}
    for rule, name in (("bp", "bp_mlp_tanh_ce_nag5e-2_b128_t1_s0"),
                       ("drtp", "drtp_mlp_tanh_ce_nag1e-2_b128_t1_s0")):
        r = load(os.path.join(out, "plast", name + ".jsonl"))
        s = r.get("summary", {})
        at5 = next((e["test_acc"] for e in r["epochs"] if e["epoch"] == 5), None)
        fa = s.get("final_test_acc")
        ok = "-" if fa is None else ("met" if fa >= bars[rule] else "MISSED")
        print(f"| {rule} | {len(r['epochs'])} | {pct(at5)} | {pct(fa)} | >= {100 * bars[rule]:.0f} % {ok} "
              f"| {s.get('epoch_s_median', float('nan')):.3f} "
              f"| {s.get('mem_peak_bytes', {}).get('activations+input', '-')} |")
    print()
    mc = json.load(open(os.path.join(out, "memcount.json")))
    print("## Memory at batch 1024 (activations + input, one training batch)\n")
    print("| rule | tracker peak B | analytic B | tracker / analytic |")
    print("|---|---|---|---|")
    meas = {}
    for rule in ("bp", "drtp"):
        r = load(os.path.join(out, "plast", f"mem_{rule}_b1024.jsonl"))
        ep = r["epochs"][0] if r["epochs"] else {}
        m = ep.get("mem_peak_bytes", {}).get("activations+input")
        meas[rule] = m
        ratio = f"{m / mc[rule]:.4f}" if m else "-"
        print(f"| {rule} | {m} | {mc[rule]} | {ratio} |")
    if meas.get("bp") and meas.get("drtp"):
        print(f"\ndrtp needs {meas['drtp'] / meas['bp']:.3f} of bp's activation+input memory "
              f"(bp / drtp = {meas['bp'] / meas['drtp']:.2f}).\n")
    best = os.path.join(out, "baselines", "best", "mlp_sgd_b128_t1_best.jsonl")
    mine = os.path.join(out, "baselines", "plast", "mlp_sgd_b128_t1.jsonl")
    if os.path.exists(best) and os.path.exists(mine):
        t = load(best).get("summary", {})
        p = load(mine).get("summary", {})
        print("## Speed: MLP 784-256-256-10 ReLU, SGD 0.1, b128, 1 thread, same run\n")
        print("| run | s/epoch median (min-max) | final test acc % |")
        print("|---|---|---|")
        for label, s in (("PyTorch mlp_sgd_b128_t1_best", t), ("plast mlp_sgd_b128_t1", p)):
            print(f"| {label} | {s.get('epoch_s_median', 0):.3f} ({s.get('epoch_s_min', 0):.3f}-"
                  f"{s.get('epoch_s_max', 0):.3f}) | {pct(s.get('final_test_acc'))} |")
        if t.get("epoch_s_median") and p.get("epoch_s_median"):
            print(f"\nplast / PyTorch epoch time: **{p['epoch_s_median'] / t['epoch_s_median']:.2f}**\n")


if __name__ == "__main__":
    main()
