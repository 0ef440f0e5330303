"""The evaluation's artifacts: a retrieval-examples image and a caption table, attached to the Sacred run."""
from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np


def attach_artifacts(run, items, ranked: dict, samples: dict, sample_lines: list | None = None) -> None:
    """Write the artifacts in a temporary folder, attach them to ``run`` (its observers copy them) and
    remove the folder. An artifact that cannot be written is a warning in ``run.info``, never a lost run.
    ``samples``: the captioners' captions; ``sample_lines``: the per-query log (``eval.log_samples``)."""
    with tempfile.TemporaryDirectory(prefix="clip3d-eval-") as tmp:
        work = Path(tmp)
        try:
            shown = [it for it in items if it.key in ranked]
            path = retrieval_examples_image(work / "retrieval_examples.png", shown, ranked)
            run.add_artifact(str(path), name="retrieval_examples.png")
        except OSError as exc:
            run.info.setdefault("warnings", []).append(f"retrieval_examples.png not written: {exc}")
        if samples:
            csv_path, md_path = caption_table(work, samples)
            run.add_artifact(str(csv_path), name="caption_samples.csv")
            run.add_artifact(str(md_path), name="caption_samples.md")
        if sample_lines is not None:
            from .samples import write_samples

            try:
                path = write_samples(work / "samples.jsonl.gz", sample_lines)
                run.add_artifact(str(path), name="samples.jsonl.gz")
            except OSError as exc:
                run.info.setdefault("warnings", []).append(f"samples.jsonl.gz not written: {exc}")


def top_captions(query_emb, text_emb, texts, keys, k: int = 5) -> dict:
    """``{key: top-k caption strings}`` of a few example queries (same normalisation as the metrics)."""
    from harness.metrics import l2_normalize

    scores = l2_normalize(query_emb) @ l2_normalize(text_emb).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {key: [texts[j] for j in row] for key, row in zip(keys, order, strict=True)}


def retrieval_examples_image(path: Path, items, ranked: dict) -> Path:
    """One row per query shape: its first view and its top-5 retrieved captions, correct ones marked."""
    from PIL import Image, ImageDraw

    thumb, line_h, width = 96, 16, 720
    img = Image.new("RGB", (width, max(1, len(items)) * (thumb + 8)), "white")
    draw = ImageDraw.Draw(img)
    for r, it in enumerate(items):
        y = r * (thumb + 8)
        img.paste(Image.open(it.views[0]).convert("RGB").resize((thumb, thumb)), (4, y + 4))
        draw.text((thumb + 12, y + 2), it.key[:100], fill=(0, 0, 0))
        for j, cap in enumerate(ranked[it.key][:5]):
            ok = cap in it.captions
            draw.text((thumb + 12, y + 4 + (j + 1) * line_h), f"{'[x]' if ok else '[ ]'} {cap}"[:100],
                      fill=(0, 128, 0) if ok else (160, 0, 0))
    img.save(path)
    return path


def caption_table(work: Path, samples: dict, n: int = 20) -> tuple[Path, Path]:
    """Sample captions against references: CSV and markdown."""
    refs = samples["references"]
    keys = list(refs)[:n]
    csv_path, md_path = work / "caption_samples.csv", work / "caption_samples.md"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["shape", "retrieval_caption", "generated_caption", "references"])
        for k in keys:
            w.writerow([k, samples.get("ret", {}).get(k, ""), samples.get("gen", {}).get(k, ""),
                        " | ".join(refs[k])])
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| shape | retrieval caption | generated caption | references |", "|---|---|---|---|"]
    ret, gen = samples.get("ret", {}), samples.get("gen", {})
    lines += [f"| {esc(k)} | {esc(ret.get(k, ''))} | {esc(gen.get(k, ''))} | {esc(' / '.join(refs[k]))} |"
              for k in keys]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path
