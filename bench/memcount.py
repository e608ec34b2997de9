#!/usr/bin/python3
"""Analytic activation+input bytes of one training batch, bp and drtp.

usage: memcount.py FILE.ini BATCH        prints {"bp": bytes, "drtp": bytes}

The count follows the model's architecture and plast's execution order,
independently of the tracker: fp32 tensors, int32 labels;

  input    the batch [B, sample] and its labels [B]
  forward  every layer's output [B, out], except activations and dropout,
           which overwrite the output of a dense/conv/add/batchnorm layer
           right before them, and flatten, which is a view; rnn (output =
           last) keeps its B*T*H hidden states; batchnorm keeps 2*C floats
  bp       every block keeps its outputs until its backward; during the
           backward of a layer the gradient at its output and the gradient
           at its input(s) are alive (in-place and view layers reuse the
           gradient buffer); a block's input gradient is not computed for
           block 0
  drtp     one block at a time: its input, its outputs and the signal at
           its activation (the loss gradient for the output block);
           nothing flows through the layers after the activation, so when
           a pooling layer follows it the signal D_k = R[label] f'(A_k) is
           written over A_k and costs nothing

The peak is the maximum over the whole batch.
"""
import configparser
import json
import sys

INPLACE = {"relu", "tanh", "sigmoid", "dropout"}
READS_Y = {"rnn"}  # maxpool finds its maximum again from x
VIEW = {"flatten"}
FOLLOWER = {"batchnorm"}


def conv_out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


class Layer:
    def __init__(self, name, sec, shape):
        self.name, self.type = name, sec["type"]
        self.input = sec.get("input", "")
        self.frm = sec.get("from", "")
        self.block_name = sec.get("block", "")
        self.params = 0
        self.saved = 0          # floats per sample kept for backward
        self.saved_fixed = 0    # floats independent of the batch
        t = self.type
        c = shape
        if t == "dense":
            units = int(sec["units"])
            self.params = 1
            self.out = (units,)
        elif t == "conv2d":
            ch, k = int(sec["channels"]), int(sec.get("kernel", 3))
            s, p = int(sec.get("stride", 1)), int(sec.get("padding", 0))
            self.params = 1
            self.out = (ch, conv_out(c[1], k, s, p), conv_out(c[2], k, s, p))
        elif t in ("maxpool", "avgpool"):
            k = int(sec["kernel"])
            s = int(sec.get("stride", 0)) or k
            p = int(sec.get("padding", 0))
            self.out = (c[0], conv_out(c[1], k, s, p), conv_out(c[2], k, s, p))
        elif t == "gap":
            self.out = (c[0],)
        elif t == "flatten":
            n = 1
            for d in c:
                n *= d
            self.out = (n,)
        elif t == "rnn":
            units, steps = int(sec["units"]), int(sec["steps"])
            self.params = 1
            if sec.get("output", "last") == "last":
                self.out = (units,)
                self.saved = steps * units
            else:
                self.out = (steps, units)
        elif t == "batchnorm":
            self.params = 1
            self.out = c
            self.saved_fixed = 2 * c[0]
        elif t == "add":
            self.params = 1 if sec.get("shortcut", "identity") == "conv1x1" else 0
            self.out = c
        else:  # activations, dropout
            self.out = c
        self.size = 1
        for d in self.out:
            self.size *= d


def load(path, sample_shape):
    cp = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    cp.read(path)
    layers, by_name = [], {}
    for sec in cp.sections():
        if not sec.startswith("layer."):
            continue
        s = cp[sec]
        src = s.get("input", "")
        shape = sample_shape if not layers else layers[-1].out
        if src:
            shape = layers[by_name[src]].out
        l = Layer(sec[6:], s, shape)
        l.inputs = [by_name[src] if src else len(layers) - 1]
        if l.frm:
            l.inputs.append(by_name[l.frm])
        by_name[l.name] = len(layers)
        layers.append(l)
    # blocks, as libcore/model.c forms them
    blocks, cur = [], None
    for i, l in enumerate(layers):
        trainable = l.params and l.type not in FOLLOWER
        if cur is None or (l.block_name and l.block_name != layers[cur[0]].block_name) or \
           (not l.block_name and trainable and (cur_has_trainable or layers[cur[0]].block_name)):
            cur = [i]
            blocks.append(cur)
            cur_has_trainable = bool(trainable)
        else:
            cur.append(i)
            cur_has_trainable = cur_has_trainable or bool(trainable)
    consumers = [0] * len(layers)
    for l in layers:
        for p in l.inputs:
            if p >= 0:
                consumers[p] += 1
    return layers, blocks, consumers


def owns_output(layers, consumers, block, i):
    """Does layer i allocate its output (vs. in place or a view)?"""
    l = layers[i]
    if l.type in VIEW:
        return False
    p = l.inputs[0]
    if l.type in INPLACE and p >= block[0] and consumers[p] == 1:
        prev = layers[p].type
        if prev not in INPLACE and prev not in VIEW and prev not in READS_Y:
            return False
    return True


def block_forward_bytes(layers, consumers, block, batch):
    f = 4
    b = 0
    for i in block:
        if owns_output(layers, consumers, block, i):
            b += batch * layers[i].size * f
        b += (batch * layers[i].saved + layers[i].saved_fixed) * f
    return b


def input_size(layers, block, sample):
    p = block[0] - 1
    return layers[p].size if p >= 0 else sample


def wants_grad(layers, blk, producer, caller):
    """As libcore/block.c: the block input only if the caller wants it;
    inside the block if a trainable layer lies at or before the producer."""
    if producer < blk[0]:
        return caller
    return any(layers[j].params for j in blk if j <= producer)


def block_backward_peak(layers, blk, k, batch, sample, base, dy):
    """Peak bytes during block k's backward and the gradient it hands to
    block k-1. base: everything alive besides the gradients."""
    f = 4

    def size(p):
        return batch * (layers[p].size if p >= 0 else sample) * f

    slots = {blk[-1]: dy}
    peak = base + dy
    for j in reversed(blk):
        if j not in slots:
            continue
        l = layers[j]
        want = [wants_grad(layers, blk, p, k > 0) for p in l.inputs]
        g = slots.pop(j)
        if not any(want) and not l.params:
            continue
        through = len(l.inputs) == 1 and (l.type in INPLACE or l.type in VIEW)
        new = 0 if through else sum(size(p) for p, w in zip(l.inputs, want) if w)
        peak = max(peak, base + g + sum(slots.values()) + new)
        for p, w in zip(l.inputs, want):
            if w and p not in slots:
                slots[p] = size(p)  # becomes the producer's gradient
    return peak, slots.get(blk[0] - 1, 0)


def bp_peak(layers, blocks, consumers, batch, sample):
    f = 4
    x = batch * sample * f
    held = [block_forward_bytes(layers, consumers, blk, batch) for blk in blocks]
    loss_grad = batch * layers[-1].size * f
    peak = x + sum(held) + loss_grad
    dy = loss_grad
    for k in range(len(blocks) - 1, -1, -1):
        base = x + sum(held[:k + 1])
        p, dy = block_backward_peak(layers, blocks[k], k, batch, sample, base, dy)
        peak = max(peak, p)
    return batch * 4 + peak


def drtp_peak(layers, blocks, consumers, batch, sample):
    f = 4
    peak = 0
    for k, blk in enumerate(blocks):
        xin = batch * input_size(layers, blk, sample) * f
        outs = block_forward_bytes(layers, consumers, blk, batch)
        if k < len(blocks) - 1:
            inj = next((i for i in blk if layers[i].type in INPLACE - {"dropout"}), blk[0])
            sig = batch * layers[inj].size * f
            # D_k is written over A_k when A_k is not what the block hands on
            after = [i for i in blk if i > inj]
            if inj > blk[0] and layers[inj].inputs[0] == inj - 1 and layers[inj - 1].params \
               and any(owns_output(layers, consumers, blk, i) for i in after):
                sig = 0
        else:
            sig = batch * layers[-1].size * f
        peak = max(peak, xin + outs + sig)
    return batch * 4 + peak


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    batch = int(sys.argv[2])
    sample = 784  # Fashion-MNIST, [1, 28, 28]
    layers, blocks, consumers = load(sys.argv[1], (1, 28, 28))
    print(json.dumps({"bp": bp_peak(layers, blocks, consumers, batch, sample),
                      "drtp": drtp_peak(layers, blocks, consumers, batch, sample),
                      "blocks": [[layers[i].name for i in b] for b in blocks]}))


if __name__ == "__main__":
    main()
