"""Generate the gRPC stubs of proto/ at build time: generated code is never edited or committed."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


def generate_protos() -> None:
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    out = str(ROOT)
    args = [
        "protoc",
        "-Iproto",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
    ]
    if protoc.main([*args, *protos]) != 0:
        raise RuntimeError(f"protoc failed for {protos}")
    for package in {(ROOT / p).parent for p in protos}:
        (package / "__init__.py").touch()


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate_protos()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
