"""The captioner's beam search as it was before it was batched (no tests here): the reference the
batched search is tested against (tests/test_captioner.py) and the former path the captioning
benchmark times (benchmarks/bench_eval.py)."""


def per_shape_beam(model, emb, beam, max_len, length_penalty=0.0):
    """Beam search one shape at a time: the captioner's search before it was batched, kept verbatim
    as the reference the batched search must match caption for caption."""
    import math

    import torch
    import torch.nn.functional as F

    beams = [([1], 0.0)]
    finished = []
    for _ in range(max_len):
        seqs = torch.tensor([s for s, _ in beams], device=emb.device)
        logp = F.log_softmax(model(emb.expand(len(beams), -1), seqs)[:, -1], dim=-1)
        logp[:, 0] = -math.inf  # never emit padding
        cand = []
        for (seq, score), row in zip(beams, logp, strict=True):
            top = torch.topk(row, beam)
            cand += [(seq + [int(i)], score + float(v))
                     for v, i in zip(top.values, top.indices, strict=True)]
        cand.sort(key=lambda c: (-c[1], c[0]))  # deterministic on equal scores
        beams = []
        for seq, score in cand:
            (finished if seq[-1] == 2 else beams).append((seq, score))
            if len(beams) == beam:
                break
        if len(finished) >= beam or not beams:
            break
    finished += beams
    best = max(finished, key=lambda c: c[1] / (len(c[0]) ** length_penalty if length_penalty else 1.0))
    return model.vocab.decode(best[0][1:])
