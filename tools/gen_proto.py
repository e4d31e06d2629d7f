"""Generate the Python code for every .proto under proto/ into the shared telecrm package.

The output (services/common/src/telecrm/...) is never committed: `make proto` builds it. The script
exits non-zero with protoc's message when a .proto does not compile.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "services" / "common" / "src"
PACKAGE = OUT_DIR / "telecrm"


def generate(proto_dir: Path = PROTO_DIR, out_dir: Path = OUT_DIR) -> list[Path]:
    """Compile every .proto in proto_dir into out_dir; raise RuntimeError when protoc fails."""
    protos = sorted(proto_dir.rglob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files under {proto_dir}")
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    top = protos[0].relative_to(proto_dir).parts[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    # Generate beside the target and swap at the end, so a .proto that does not compile leaves the
    # previous generated package in place (every service keeps importing).
    staging = Path(tempfile.mkdtemp(prefix=".gen-", dir=out_dir))
    try:
        _protoc(proto_dir, staging, well_known, protos)
        generated = staging / top
        # Regular packages (not namespace ones) so that mypy and importlib resolve them the same way.
        for directory in [generated, *(p for p in generated.rglob("*") if p.is_dir())]:
            (directory / "__init__.py").touch()
        (generated / "py.typed").touch()
        target = out_dir / top
        if target.exists():
            shutil.rmtree(target)
        generated.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return protos


def _protoc(proto_dir: Path, out_dir: Path, well_known: Path, protos: list[Path]) -> None:
    bin_dir = Path(sys.executable).parent  # mypy-protobuf's plugins live beside the interpreter
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p.relative_to(proto_dir)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: see the messages above")


def main() -> int:
    try:
        protos = generate()
    except RuntimeError as exc:
        print(f"gen_proto: {exc}", file=sys.stderr)
        return 1
    print(f"gen_proto: {len(protos)} .proto files -> {PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
