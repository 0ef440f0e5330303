"""Content identity of a mesh: a hash over its bytes and the material and texture files it references.

A cached render is reused only when this hash matches the one recorded with it, so a mesh fixed in
place, a re-downloaded dataset or a second dataset whose shapes share paths never gets another
mesh's images. Hashing a 10k-mesh dataset must stay cheap on every run: a ``cache`` dict remembers
``(size, mtime_ns) -> sha256`` per file and the files each mesh references, so only what changed
is read again (the caller decides where that dict is persisted).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

# OBJ: "mtllib a.mtl b.mtl"; MTL: every texture map statement ("map_Kd -s 1 1 1 tex.png", "bump x.png").
_MTLLIB = re.compile(rb"^[ \t]*mtllib[ \t]+(.+?)[ \t]*\r?$", re.M)
_MAPS = re.compile(rb"^[ \t]*(?:map_\w+|bump|disp|decal|refl|norm)[ \t]+(.+?)[ \t]*\r?$", re.M | re.I)
_OPTION_ARGS = {b"-blendu": 1, b"-blendv": 1, b"-bm": 1, b"-boost": 1, b"-cc": 1, b"-clamp": 1,
                b"-imfchan": 1, b"-mm": 2, b"-o": 3, b"-s": 3, b"-t": 3, b"-texres": 1, b"-type": 1}
CONTENT_HASH_VERSION = 1  # bump when what goes into the hash changes: every cached render is redone


def _texture_name(statement: bytes) -> bytes:
    """The file name of an MTL map statement, after its options (``-s 1 1 1 -o 0 0 0 name.png``)."""
    words = statement.split()
    i = 0
    while i < len(words) and words[i] in _OPTION_ARGS:
        n = _OPTION_ARGS[words[i]]
        i += 1
        while n and i < len(words) and re.fullmatch(rb"[-+0-9.eE]+|on|off|[rgbmlz]", words[i]):
            i += 1
            n -= 1
    return b" ".join(words[i:])


def _stamp(path: Path) -> list | None:
    try:
        st = path.stat()
    except OSError:
        return None  # missing: recorded as such, so the file appearing later changes the identity
    return [st.st_size, st.st_mtime_ns]


def _decode(name: bytes) -> str:
    return name.decode("utf-8", "replace").strip().strip('"')


def referenced_files(path: str | os.PathLike) -> list[Path]:
    """Files a mesh file references (OBJ: its .mtl libraries and their textures; glTF: buffers and
    images), in order, whether or not they exist. Self-contained formats (GLB, OFF, PLY, STL) have none."""
    path = Path(path)
    suffix = path.suffix.lower()
    out: list[Path] = []
    if suffix == ".obj":
        for line in _MTLLIB.findall(path.read_bytes()):
            # a name with spaces is one file when it exists; else "mtllib a.mtl b.mtl" lists several
            libs = [line] if (path.parent / _decode(line)).is_file() else line.split()
            for lib in libs:
                mtl = path.parent / _decode(lib)
                out.append(mtl)
                if mtl.is_file():
                    out += [mtl.parent / _decode(_texture_name(m)) for m in _MAPS.findall(mtl.read_bytes())]
    elif suffix == ".gltf":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return out  # the loader reports a broken glTF; the hash still covers its bytes
        for entry in [*doc.get("buffers", []), *doc.get("images", [])]:
            uri = entry.get("uri") if isinstance(entry, dict) else None
            if isinstance(uri, str) and not uri.startswith("data:"):
                out.append(path.parent / uri)
    return list(dict.fromkeys(out))


def file_sha256(path: str | os.PathLike, cache: dict | None = None) -> str | None:
    """sha256 of a file's bytes (None when it does not exist), reused from ``cache`` while its size
    and mtime are unchanged."""
    path = Path(path)
    stamp = _stamp(path)
    if stamp is None:
        return None
    files = cache.setdefault("files", {}) if cache is not None else {}
    hit = files.get(str(path))
    if hit and hit[:2] == stamp:
        return hit[2]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    files[str(path)] = [*stamp, h.hexdigest()]
    return h.hexdigest()


def mesh_content_hash(path: str | os.PathLike, cache: dict | None = None) -> str:
    """16-hex-digit identity of a mesh: its bytes and those of every file it references (by name
    relative to the mesh, missing ones included as missing). ``cache``: see the module docstring;
    while no file's (size, mtime) changed, a call costs one stat per file."""
    path = Path(path)
    meshes = cache.setdefault("meshes", {}) if cache is not None else {}
    stamp = _stamp(path)
    hit = meshes.get(str(path))  # [mesh stamp, [referenced files], [their stamps], hash]
    if hit and hit[0] == stamp and [_stamp(Path(d)) for d in hit[1]] == hit[2]:
        return hit[3]
    deps = referenced_files(path) if stamp is not None else []
    h = hashlib.sha256(f"clip3d-mesh-v{CONTENT_HASH_VERSION}\0".encode())
    h.update(f"{path.name}\0{file_sha256(path, cache)}\0".encode())
    for dep in deps:
        h.update(f"{os.path.relpath(dep, path.parent)}\0{file_sha256(dep, cache)}\0".encode())
    digest = h.hexdigest()[:16]
    meshes[str(path)] = [stamp, [str(d) for d in deps], [_stamp(d) for d in deps], digest]
    return digest


def load_cache(path: str | os.PathLike) -> dict:
    """A hash cache persisted by :func:`save_cache` (an empty one when absent, unreadable or old)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == CONTENT_HASH_VERSION else {}


def save_cache(path: str | os.PathLike, cache: dict) -> None:
    """Persist ``cache`` atomically (best effort: a read-only location only costs rehashing)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({**cache, "version": CONTENT_HASH_VERSION}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
