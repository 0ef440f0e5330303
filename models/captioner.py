"""Captioners for evaluation: nearest train caption, and a small ClipCap-style generative decoder.

* ``RetrievalCaptioner``: for a shape embedding, the nearest caption (by CLIP text embedding) from a
  caption bank built from the TRAIN split only — test captions never enter the bank.
* ``PrefixCaptioner``: the CLIP embedding is mapped by an MLP to ``prefix_len`` pseudo-token
  embeddings that precede the caption (ClipCap, Mokady et al. 2021) in a small causal transformer
  with its own word-level vocabulary built from train captions. Self-contained and fast on CPU;
  greedy and beam decoding; seeded.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped, as the PTB tokenizer's metrics do too)."""
    return _WORD.findall(text.lower())


class RetrievalCaptioner:
    """Nearest-caption captioner over a bank of TRAIN captions and their (normalised) text embeddings."""

    def __init__(self, bank_texts: Sequence[str], bank_emb):
        bank_emb = np.asarray(bank_emb, dtype=np.float32)
        if len(bank_texts) == 0 or len(bank_texts) != len(bank_emb):
            raise ConfigError(f"caption bank needs one embedding per caption, got {len(bank_texts)} captions "
                              f"and {len(bank_emb)} embeddings")
        self.texts = list(bank_texts)
        self.emb = bank_emb / np.maximum(np.linalg.norm(bank_emb, axis=1, keepdims=True), 1e-12)

    @staticmethod
    def bank_from_captions(train_captions: dict[str, Sequence[str]],
                           test_keys: Sequence[str] = ()) -> list[str]:
        """Unique caption strings of the train shapes, in first-seen order; refuses any test shape."""
        leaked = sorted(set(train_captions) & set(test_keys))
        if leaked:
            raise ConfigError(f"caption bank must hold train captions only; test shapes given: {leaked[:3]}")
        return list(dict.fromkeys(c for key in train_captions for c in train_captions[key]))

    def caption(self, query_emb, k: int = 1) -> list[str] | list[list[str]]:
        """Nearest bank caption of each query (``k`` > 1: the top-k captions, best first)."""
        q = np.asarray(query_emb, dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        scores = q @ self.emb.T
        # Stable order on -score: ties go to the earlier bank caption, deterministically.
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        if k == 1:
            return [self.texts[i] for i in top[:, 0]]
        return [[self.texts[i] for i in row] for row in top]


@dataclass
class Vocab:
    """Word-level vocabulary from train captions (ids 0..3 are pad, bos, eos, unk)."""

    itos: list[str] = field(default_factory=lambda: [PAD, BOS, EOS, UNK])

    @classmethod
    def build(cls, captions: Sequence[str], min_freq: int = 1, max_size: int = 5000) -> Vocab:
        counts = Counter(w for c in captions for w in words(c))
        kept = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
        return cls([PAD, BOS, EOS, UNK] + kept[:max_size])

    def __post_init__(self):
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_len: int) -> list[int]:
        ids = [self.stoi.get(w, 3) for w in words(text)][: max_len - 2]
        return [1] + ids + [2]

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            if i == 2:
                break
            if i > 3:
                out.append(self.itos[i])
        return " ".join(out)


class PrefixCaptioner(nn.Module):
    """CLIP embedding → learned prefix → causal transformer over word tokens (ClipCap-style)."""

    def __init__(self, vocab: Vocab, embed_dim: int, d_model: int = 128, prefix_len: int = 4, layers: int = 2,
                 heads: int = 4, max_len: int = 24, dropout: float = 0.1):
        super().__init__()
        self.vocab, self.prefix_len, self.max_len, self.d_model = vocab, prefix_len, max_len, d_model
        self.config = dict(embed_dim=embed_dim, d_model=d_model, prefix_len=prefix_len, layers=layers,
                           heads=heads, max_len=max_len, dropout=dropout)
        hidden = d_model * prefix_len // 2 + d_model
        self.prefix = nn.Sequential(nn.Linear(embed_dim, hidden), nn.Tanh(),
                                    nn.Linear(hidden, d_model * prefix_len))
        self.tok = nn.Embedding(len(vocab), d_model, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(prefix_len + max_len, d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, len(vocab))

    def forward(self, image_emb: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) for ``tokens`` (B, T) given the image embedding (B, D)."""
        b, t = tokens.shape
        prefix = self.prefix(F.normalize(image_emb.float(), dim=-1)).view(b, self.prefix_len, self.d_model)
        x = torch.cat([prefix, self.tok(tokens)], dim=1) + self.pos[: self.prefix_len + t]
        n = self.prefix_len + t
        mask = torch.triu(torch.full((n, n), float("-inf"), device=x.device), diagonal=1)
        h = self.blocks(x, mask=mask, is_causal=True)
        return self.head(self.norm(h[:, self.prefix_len:]))

    @torch.no_grad()
    def generate(self, image_emb, beam_size: int = 1, max_len: int | None = None,
                 length_penalty: float = 0.0) -> list[str]:
        """Captions for (N, D) embeddings: greedy (``beam_size`` 1) or beam search."""
        self.eval()
        emb = torch.as_tensor(np.asarray(image_emb), dtype=torch.float32, device=self.pos.device)
        max_len = min(max_len or self.max_len, self.max_len) - 1
        if beam_size <= 1:
            return self._greedy(emb, max_len)
        return [self._beam(emb[i:i + 1], beam_size, max_len, length_penalty) for i in range(len(emb))]

    def _greedy(self, emb: torch.Tensor, max_len: int) -> list[str]:
        tokens = torch.ones(len(emb), 1, dtype=torch.long, device=emb.device)
        done = torch.zeros(len(emb), dtype=torch.bool, device=emb.device)
        for _ in range(max_len):
            nxt = self(emb, tokens)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, 2), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            done |= nxt == 2
            if done.all():
                break
        return [self.vocab.decode(row[1:].tolist()) for row in tokens]

    def _beam(self, emb: torch.Tensor, beam: int, max_len: int, length_penalty: float) -> str:
        beams = [([1], 0.0)]
        finished = []
        for _ in range(max_len):
            seqs = torch.tensor([s for s, _ in beams], device=emb.device)
            logp = F.log_softmax(self(emb.expand(len(beams), -1), seqs)[:, -1], dim=-1)
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
        return self.vocab.decode(best[0][1:])


def train_captioner(image_emb, captions: Sequence[Sequence[str]], epochs: int = 30, batch_size: int = 64,
                    lr: float = 2e-3, seed: int = 0, device: str = "cpu", progress: bool = False,
                    **model_kwargs) -> PrefixCaptioner:
    """Train a ``PrefixCaptioner`` on (train shape embeddings, their captions); seeded and deterministic.

    ``image_emb`` (N, D); ``captions[i]`` are the captions of shape ``i`` (every caption is a sample).
    """
    emb = torch.as_tensor(np.asarray(image_emb), dtype=torch.float32)
    if emb.ndim != 2 or len(emb) != len(captions):
        raise ConfigError(f"captioner training needs one embedding row per shape's caption list, got "
                          f"{tuple(emb.shape)} embeddings and {len(captions)} caption lists")
    pairs = [(i, c) for i, caps in enumerate(captions) for c in caps]
    if not pairs:
        raise ConfigError("captioner training got no captions; the train split has none")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vocab = Vocab.build([c for _, c in pairs])
    model = PrefixCaptioner(vocab, emb.shape[1], **model_kwargs).to(device)
    max_len = model.max_len
    seqs = [vocab.encode(c, max_len) for _, c in pairs]
    tokens = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    for r, s in enumerate(seqs):
        tokens[r, : len(s)] = torch.tensor(s)
    shape_idx = torch.tensor([i for i, _ in pairs])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(pairs) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    model.train()
    from tqdm.auto import tqdm
    for _ in tqdm(range(epochs), desc="captioner", disable=not progress, leave=False):
        order = torch.randperm(len(pairs), generator=gen)
        for s in range(0, len(pairs), batch_size):
            idx = order[s:s + batch_size]
            tok = tokens[idx].to(device)
            length = int((tok != 0).sum(1).max())
            tok = tok[:, :length]
            logits = model(emb[shape_idx[idx]].to(device), tok[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1),
                                   ignore_index=0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    model.train_loss = float(loss.detach())
    return model.eval()
