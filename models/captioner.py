"""Captioners for evaluation: nearest train caption, and a small ClipCap-style generative decoder.

* ``RetrievalCaptioner``: for a shape embedding, the nearest caption (by CLIP text embedding) from a
  caption bank built from the TRAIN split only — test captions never enter the bank.
* ``PrefixCaptioner``: the CLIP embedding is mapped by an MLP to ``prefix_len`` pseudo-token
  embeddings that precede the caption (ClipCap, Mokady et al. 2021) in a small causal transformer
  with its own word-level vocabulary built from train captions. Self-contained and fast on CPU;
  greedy and beam decoding (all shapes at once); seeded; optional early stopping on the validation
  loss of held-out train shapes.
Training (``train_captioner``) and the on-disk cache of trained captioners (``cached_captioner``)
are in ``models.captioner_training``.
"""
from __future__ import annotations

import copy
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


class DecoderBlock(nn.Module):
    """A pre-norm causal self-attention block: ``nn.TransformerEncoderLayer(norm_first=True)`` with a
    causal mask, in five kernels' worth of Python instead of its many checks (~15 % of a training step
    of this small decoder on a CPU). Parameters are created and initialised in the layer's order with
    its initialisers (xavier-uniform in-projection, zero attention biases), so a seed gives the same
    weights and the same outputs as the layer (tested)."""

    def __init__(self, d_model: int, heads: int, ff: int, dropout: float):
        super().__init__()
        if d_model % heads:
            raise ConfigError(f"captioner d_model={d_model} must be a multiple of its {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.utils.skip_init(nn.Linear, d_model, 3 * d_model)  # initialised below, as the layer does
        self.out = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.out.bias)
        self.ff1 = nn.Linear(d_model, ff)
        self.ff2 = nn.Linear(ff, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        p = self.dropout if self.training else 0.0
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        x = x + F.dropout(self.out(a.transpose(1, 2).reshape(b, t, d)), p, self.training)
        h = F.dropout(F.relu(self.ff1(self.norm2(x))), p, self.training)
        return x + F.dropout(self.ff2(h), p, self.training)


class PrefixCaptioner(nn.Module):
    """CLIP embedding → learned prefix → causal transformer over word tokens (ClipCap-style)."""

    def __init__(self, vocab: Vocab, embed_dim: int, d_model: int = 128, prefix_len: int = 4, layers: int = 2,
                 heads: int = 4, max_len: int = 24, dropout: float = 0.1, standardize: bool = True):
        super().__init__()
        self.vocab, self.prefix_len, self.max_len, self.d_model = vocab, prefix_len, max_len, d_model
        self.standardize = standardize
        self.config = dict(embed_dim=embed_dim, d_model=d_model, prefix_len=prefix_len, layers=layers,
                           heads=heads, max_len=max_len, dropout=dropout, standardize=standardize)
        # per-dimension mean and 1/std of the train shapes' normalised embeddings (fit_input); saved
        # with the weights. Until fitted they change nothing.
        self.register_buffer("emb_mean", torch.zeros(embed_dim))
        self.register_buffer("emb_scale", torch.ones(embed_dim))
        hidden = d_model * prefix_len // 2 + d_model
        self.prefix = nn.Sequential(nn.Linear(embed_dim, hidden), nn.Tanh(),
                                    nn.Linear(hidden, d_model * prefix_len))
        self.tok = nn.Embedding(len(vocab), d_model, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(prefix_len + max_len, d_model))
        nn.init.normal_(self.pos, std=0.02)
        block = DecoderBlock(d_model, heads, 4 * d_model, dropout)
        self.blocks = nn.Sequential(*[block] + [copy.deepcopy(block) for _ in range(layers - 1)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, len(vocab))

    @torch.no_grad()
    def fit_input(self, train_emb) -> None:
        """Standardise inputs by the train shapes' embeddings: CLIP embeddings of one dataset share a
        large common direction (cosine 0.83 between Pix3D-preset train shapes, 0.98 for an untrained
        tower), so the prefix MLP sees small differences on a large offset. Centred and scaled per
        dimension, the captioner tells the shapes apart far better (CIDEr +18 % on the Pix3D-sized
        preset, docs/PERFORMANCE.md). A no-op without ``standardize`` or with under two shapes."""
        if not self.standardize or len(train_emb) < 2:
            return
        emb = F.normalize(torch.as_tensor(np.asarray(train_emb), dtype=torch.float32), dim=-1)
        std = emb.std(0, unbiased=False)
        # a dimension (nearly) constant over the train shapes must not blow a test shape's up
        std = std.clamp_min(0.1 * float(std.mean()) + 1e-12)
        self.emb_mean.copy_(emb.mean(0))
        self.emb_scale.copy_(1.0 / std)

    def _input(self, image_emb: torch.Tensor) -> torch.Tensor:
        x = F.normalize(image_emb.float(), dim=-1)
        if self.standardize:
            x = F.normalize((x - self.emb_mean) * self.emb_scale, dim=-1)
        return x

    def forward(self, image_emb: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) for ``tokens`` (B, T) given the image embedding (B, D)."""
        b, t = tokens.shape
        prefix = self.prefix(self._input(image_emb)).view(b, self.prefix_len, self.d_model)
        x = torch.cat([prefix, self.tok(tokens)], dim=1) + self.pos[: self.prefix_len + t]
        return self.head(self.norm(self.blocks(x)[:, self.prefix_len:]))

    @torch.no_grad()
    def generate(self, image_emb, beam_size: int = 1, max_len: int | None = None,
                 length_penalty: float = 0.0, chunk: int = 256) -> list[str]:
        """Captions for (N, D) embeddings: greedy (``beam_size`` 1) or beam search.

        Beam search runs over ``chunk`` shapes at once (every live beam of every shape in one forward
        pass per step) and picks exactly the captions a search over one shape at a time picks: the
        same candidates, scores (log-probabilities summed in double precision) and tie-breaks.
        """
        self.eval()
        emb = torch.as_tensor(np.asarray(image_emb), dtype=torch.float32, device=self.pos.device)
        max_len = min(max_len or self.max_len, self.max_len) - 1
        if beam_size <= 1:
            return self._greedy(emb, max_len)
        out: list[str] = []
        for s in range(0, len(emb), max(1, chunk)):
            out += self._beam_batched(emb[s:s + chunk], beam_size, max_len, length_penalty)
        return out

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

    def _beam_batched(self, emb: torch.Tensor, beam: int, max_len: int, length_penalty: float) -> list[str]:
        """Beam search of every shape of ``emb`` at once; per shape the same steps as a lone search.

        All live beams have the same length at a step (finished ones leave), so they stack without
        padding. Per shape: the top ``beam`` tokens of each live beam are the candidates, sorted by
        (-score, sequence); the first ``beam`` unfinished ones live on, finished ones are kept; a
        shape is done after ``beam`` finished captions or when no beam lives.
        """
        n = len(emb)
        beams: list[list[tuple[list[int], float]]] = [[([1], 0.0)] for _ in range(n)]
        finished: list[list[tuple[list[int], float]]] = [[] for _ in range(n)]
        active = list(range(n))
        for _ in range(max_len):
            owners = [i for i in active for _ in beams[i]]
            seqs = torch.tensor([seq for i in active for seq, _ in beams[i]], device=emb.device)
            logp = F.log_softmax(self(emb[owners], seqs)[:, -1], dim=-1)
            logp[:, 0] = -math.inf  # never emit padding
            top = torch.topk(logp, beam, dim=-1)
            values, indices = top.values.tolist(), top.indices.tolist()
            row, still = 0, []
            for i in active:
                cand = []
                for seq, score in beams[i]:
                    cand += [(seq + [j], score + v) for v, j in zip(values[row], indices[row], strict=True)]
                    row += 1
                cand.sort(key=lambda c: (-c[1], c[0]))  # deterministic on equal scores
                beams[i] = []
                for seq, score in cand:
                    (finished[i] if seq[-1] == 2 else beams[i]).append((seq, score))
                    if len(beams[i]) == beam:
                        break
                if len(finished[i]) < beam and beams[i]:
                    still.append(i)
            active = still
            if not active:
                break
        out = []
        for i in range(n):
            done = finished[i] + beams[i]
            best = max(done, key=lambda c: c[1] / (len(c[0]) ** length_penalty if length_penalty else 1.0))
            out.append(self.vocab.decode(best[0][1:]))
        return out
