#!/usr/bin/env python3
"""Compares @ddsjs/safetensors' accept/reject decisions (from diff-gen.js) with the reference Rust
library's `safetensors.deserialize`. Usage: python3 diff-cmp.py OUT_DIR"""
import collections, json, os, sys
from safetensors import deserialize

out = sys.argv[1]
ours = json.load(open(os.path.join(out, 'ours.json')))
agree = 0
dis = collections.Counter()
example = {}
for p, o in ours.items():
    try:
        rkeys = sorted(k for k, _ in deserialize(open(p, 'rb').read()))
        rust, rerr = True, ''
    except Exception as e:  # noqa: BLE001
        rust, rerr = False, str(e)[:80]
    if rust == o['ok'] and (not rust or rkeys == o['keys']):
        agree += 1
    else:
        k = ('rust accepts' if rust else 'rust rejects: ' + rerr) + ' | ours: ' + ('accept' if o['ok'] else o['msg'][:70])
        dis[k] += 1
        example.setdefault(k, p)
print('agree', agree, 'of', len(ours))
for k, v in dis.most_common():
    print(v, k, example[k])
