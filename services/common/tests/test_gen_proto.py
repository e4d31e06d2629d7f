"""tools/gen_proto.py: the real protos compile, and a broken .proto fails loudly."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def gen_proto() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto_under_test", ROOT / "tools" / "gen_proto.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def proto_copy(tmp_path: Path) -> Path:
    target = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", target)
    return target


def test_the_real_protos_compile_into_an_importable_package(
    gen_proto: ModuleType, proto_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    protos = gen_proto.generate(proto_copy, out)

    assert protos == sorted(proto_copy.rglob("*.proto"))
    assert protos, "proto/ has .proto files"
    for proto in protos:
        stem = out / proto.relative_to(proto_copy).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            assert Path(f"{stem}{suffix}").is_file(), f"{stem}{suffix}"
    assert (out / "telecrm" / "py.typed").is_file()
    assert (out / "telecrm" / "events" / "v1" / "__init__.py").is_file()

    # The generated package imports on its own (in a fresh interpreter, ahead of the installed one).
    code = (
        "import telecrm, sys\n"
        "from telecrm.events.v1 import call_events_pb2\n"
        "from telecrm.calls.v1 import calls_pb2, calls_pb2_grpc\n"
        "from telecrm.gateway.v1 import gateway_pb2_grpc\n"
        "print(telecrm.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(out)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "telecrm" / "__init__.py")


def test_a_syntax_error_raises_with_protoc_naming_the_file(
    gen_proto: ModuleType, proto_copy: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    broken = proto_copy / "telecrm" / "events" / "v1" / "call_events.proto"
    broken.write_text(broken.read_text().replace("message Party {", "message Party {{", 1))
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(RuntimeError, match="protoc failed"):
        gen_proto.generate(proto_copy, out)
    assert "call_events.proto" in capfd.readouterr().err


def test_a_broken_proto_leaves_the_previous_generated_package_in_place(
    gen_proto: ModuleType, proto_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    gen_proto.generate(proto_copy, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    broken = proto_copy / "telecrm" / "calls" / "v1" / "calls.proto"
    broken.write_text(broken.read_text() + "\nmessage Broken {")

    with pytest.raises(RuntimeError, match="protoc failed"):
        gen_proto.generate(proto_copy, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before, "nothing deleted, no staging left"


def test_an_empty_proto_dir_is_an_error(gen_proto: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"no \.proto files"):
        gen_proto.generate(tmp_path, tmp_path / "out")
