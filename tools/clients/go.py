"""Builds the Go client (clients/go) and its check program against stubs made from protos/.

Toolchain: Debian's Go 1.19 and the Go gRPC/protobuf libraries as Debian packages (GOPATH
mode, no module proxy: the registry is the machine's apt configuration), fetched with
``apt-get download`` (tools/fetch/debian.py), checked against the pinned SHA-256 and
unpacked under .venv/toolchains/go. Stubs: ``buf generate`` with buf.gen.yaml (buf is the
project's proto tool already, tools/fetch/buf.py) running Debian's protoc-gen-go and
protoc-gen-go-grpc. Go's build cache lives in
.venv/cache/go-build, so only the first build compiles grpc-go (about 10 s here).
``python -m tools.clients.go`` prints the path of the built check program.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.clients import (
    BUILD_DIR,
    PROTO_ROOT,
    ROOT,
    TOOLCHAINS,
    inputs_hash,
    stamp_matches,
)
from tools.fetch import CACHE_DIR, FetchError
from tools.fetch.buf import install as install_buf
from tools.fetch.debian import debian_arch, extract_deb, fetch_deb

SOURCE_DIR = ROOT / "clients" / "go"
TOOLCHAIN_DIR = TOOLCHAINS / "go"
GOROOT = TOOLCHAIN_DIR / "usr" / "lib" / "go-1.19"
DEBIAN_GOPATH = TOOLCHAIN_DIR / "usr" / "share" / "gocode"
GOCACHE = CACHE_DIR / "go-build"
GOPATH = BUILD_DIR / "go"
#: Import path of clients/go inside GOPATH; the stubs' own path is their go_package option.
CLIENT_IMPORT_PATH = "example.com/speech/client"
CHECK_PACKAGE = f"{CLIENT_IMPORT_PATH}/cmd/speechcheck"
#: The go_package of protos/speech/v1 (where the stubs land).
STUBS_IMPORT_PATH = "example.com/speech/gen/speech/v1"
#: buf's generation template for the Go stubs (its outputs go under GOPATH/src).
GEN_TEMPLATE = ROOT / "buf.gen.yaml"
CHECK_BINARY = GOPATH / "bin" / "speechcheck"


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    #: SHA-256 per Debian architecture ("all" for architecture-independent packages).
    sha256: dict[str, str]


# Debian bookworm. Only amd64 is pinned for the architecture-specific ones; elsewhere apt's own
# signature checks stand alone.
PACKAGES = (
    Deb("golang-1.19-go", "1.19.8-2",
        {"amd64": "545123039b6c79e75cf2d86528781a825424cf33ce9d3f4513d772d7144cd531"}),
    Deb("golang-1.19-src", "1.19.8-2",
        {"all": "2dfa82fe4f08f4e0193c532e561af4c91871f5235608f04f2bb8d57bb288df5a"}),
    Deb("golang-google-grpc-dev", "1.33.3-2",
        {"all": "d6f918cc84a7186d5bf08d21bd3b210db5fb68b34887dca2ff89d47ca37b8749"}),
    Deb("golang-google-protobuf-dev", "1.28.1-3",
        {"all": "8421baafafb4eb08d191fa1a09449bae40eda04aee82a55f827c52226c7abfc0"}),
    Deb("golang-github-golang-protobuf-1-5-dev", "1.5.2-3",
        {"all": "d27c42c5122821f877a98f0754058346c614b2ac49a24b5a1b02ab2512ce2e93"}),
    Deb("golang-google-genproto-dev", "0.0~git20200413.b5235f6-3",
        {"all": "b087b6c3570a5a96f0b0827b66bbf4b4b031e71fe3c703f86686ab3009070e4e"}),
    Deb("golang-golang-x-net-dev", "1:0.7.0+dfsg-1",
        {"all": "ddfa0ab08e6caf68eb51c96f9b8ba7c3ab6c93aada7147c3a20a187e38a9d259"}),
    Deb("golang-golang-x-sys-dev", "0.3.0-1",
        {"all": "1bbeb938568f2014ada7473dd3fad8c8cbc45fabf0dcc7bc86b4392af0fd4bc8"}),
    Deb("golang-golang-x-text-dev", "0.7.0-1",
        {"all": "0d4e17e9caa2656bdc633b723645d4adafeda93189bd1d55fedf64ec38439f63"}),
    Deb("protoc-gen-go", "1.28.1-3+b2",
        {"amd64": "7525aa3f32d1c6b8af1252c40e015ea4dea481649d25b8df8e8ac401b2556776"}),
    Deb("protoc-gen-go-grpc", "1.33.3-2+b4",
        {"amd64": "eb3786972d82e59dcb1e497515b7642a72322d466e13d769ccce942cf5ea1668"}),
)
#: Parts of the packages a build never reads (Go's own test suite, docs): not unpacked.
SKIP = ("usr/share/go-1.19/test/", "usr/share/doc/", "usr/share/man/", "usr/share/lintian/")


def install_toolchain() -> Path:
    """Unpacks the pinned packages into .venv/toolchains/go once; returns its GOROOT."""
    arch = debian_arch("Go toolchain")
    pins = inputs_hash([], arch, *(f"{d.name}={d.version}" for d in PACKAGES), *SKIP)
    stamp = TOOLCHAIN_DIR / ".installed"
    if stamp_matches(stamp, pins):
        return GOROOT
    staging = TOOLCHAIN_DIR.with_name("go.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for deb in PACKAGES:
        arch_of_deb = "all" if "all" in deb.sha256 else arch
        data = fetch_deb(deb.name, deb.version, deb.sha256.get(arch_of_deb),
                         arch=None if arch_of_deb == "all" else arch)
        extract_deb(data, staging, skip=SKIP)
    (staging / ".installed").write_text(pins)
    shutil.rmtree(TOOLCHAIN_DIR, ignore_errors=True)
    staging.replace(TOOLCHAIN_DIR)
    return GOROOT


def go_environment() -> dict[str, str]:
    """GOPATH mode over the Debian Go libraries; no module proxy, no cgo (no C compiler)."""
    return {
        **os.environ,
        "GOROOT": str(GOROOT),
        "GOPATH": f"{GOPATH}{os.pathsep}{DEBIAN_GOPATH}",
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
        "GOCACHE": str(GOCACHE),
    }


def go_tool(name: str = "go") -> Path:
    return GOROOT / "bin" / name


def generate_stubs() -> None:
    """``buf generate`` with buf.gen.yaml: the Go plugins over every .proto of the module."""
    plugins = TOOLCHAIN_DIR / "usr" / "bin"
    env = {**os.environ, "PATH": f"{plugins}{os.pathsep}{os.environ.get('PATH', '')}"}
    _run([str(install_buf()), "generate", "--template", str(GEN_TEMPLATE)], env=env)
    if not (GOPATH / "src" / STUBS_IMPORT_PATH).is_dir():
        raise FetchError(f"{GEN_TEMPLATE.name} wrote no stubs at {STUBS_IMPORT_PATH}")


def build() -> Path:
    """The check program, built from fresh stubs and clients/go when either changed."""
    install_toolchain()
    sources = [*SOURCE_DIR.rglob("*.go"), *PROTO_ROOT.rglob("*.proto"), GEN_TEMPLATE,
               Path(__file__)]
    stamp = GOPATH / ".built"
    digest = inputs_hash(sources, (TOOLCHAIN_DIR / ".installed").read_text())
    if CHECK_BINARY.exists() and stamp_matches(stamp, digest):
        return CHECK_BINARY
    shutil.rmtree(GOPATH, ignore_errors=True)
    generate_stubs()
    shutil.copytree(SOURCE_DIR, GOPATH / "src" / CLIENT_IMPORT_PATH)
    _run([str(go_tool()), "build", "-o", str(CHECK_BINARY), CHECK_PACKAGE],
         env=go_environment())
    stamp.write_text(digest)
    return CHECK_BINARY


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env,
                            check=False)
    if result.returncode != 0:
        raise FetchError(f"{' '.join(command[:3])} ... failed:\n{result.stderr[-4000:]}")


if __name__ == "__main__":
    print(f"go client check: {build()}", file=sys.stderr)
