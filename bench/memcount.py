#!/usr/bin/python3
"""Analytic activation+input bytes of one training batch of a dense MLP
under bp and drtp, as plast executes them (fp32, int32 labels):

  bp:   labels + x + sum_{j<=k} A_j + dY_k + dX_k, maximised over the
        backward step k (every block's output is kept until its backward;
        dY_k is block k's output gradient, dX_k its input gradient, k > 0)
  drtp: labels + max_k (X_k + A_k + G_k): one block's input, output and
        local signal (for the output block G is the loss gradient)

Activation layers run in place on the dense output, so a block keeps one
[B, units] buffer.

usage: memcount.py BATCH INPUT UNITS... (e.g. 1024 784 256 256 10)
prints JSON {"bp": bytes, "drtp": bytes}
"""
import json
import sys


def counts(batch, sizes):
    f = 4
    x = batch * sizes[0] * f
    labels = batch * 4
    outs = [batch * n * f for n in sizes[1:]]
    K = len(outs)
    bp = 0
    for k in range(K):
        kept = x + sum(outs[:k + 1])
        dy = outs[k]
        dx = outs[k - 1] if k > 0 else 0
        bp = max(bp, kept + dy + dx)
    drtp = 0
    for k in range(K):
        xin = x if k == 0 else outs[k - 1]
        drtp = max(drtp, xin + 2 * outs[k])
    return {"bp": labels + bp, "drtp": labels + drtp}


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    b = int(sys.argv[1])
    print(json.dumps(counts(b, [int(v) for v in sys.argv[2:]])))
