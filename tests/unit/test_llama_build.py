"""The llama.cpp build flags never enable AMX, and a crashed smoke decode names the override."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from coderapi.engines.llama_cpp.smoke import OVERRIDE_VARIABLE, crash_message

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "build_llama.sh"


def _c_flags(cmake_args: str) -> list[str]:
    for arg in shlex.split(cmake_args):
        if arg.startswith("-DCMAKE_C_FLAGS="):
            return shlex.split(arg.split("=", 1)[1])
    return []


def _macros(flags: list[str], march: str) -> str:
    # GCC keeps an explicit -mno-* whatever -march comes after it (as ggml appends -march=native).
    proc = subprocess.run(
        ["gcc", *flags, f"-march={march}", "-dM", "-E", "-"], input="", capture_output=True, text=True, check=True
    )
    return proc.stdout


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_default_build_flags_compile_no_amx_even_for_an_amx_cpu():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    cmake_args = subprocess.run([str(BUILD), "flags"], capture_output=True, text=True, check=True, env=env).stdout
    assert "-DGGML_NATIVE=ON" in cmake_args  # AVX-512/AVX2 kept: the build is native, less AMX
    flags = _c_flags(cmake_args)
    amx_cpu = _macros(flags, "sapphirerapids")
    assert "__AMX_INT8__" not in amx_cpu and "__AMX_TILE__" not in amx_cpu
    assert "__AVX512F__" in amx_cpu and "__AVX512VNNI__" in amx_cpu
    assert "__AMX_INT8__" in _macros([], "sapphirerapids")  # the check itself can see AMX


def test_override_variable_replaces_the_cmake_args():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", OVERRIDE_VARIABLE: "-DGGML_NATIVE=OFF -DGGML_AVX2=ON"}
    out = subprocess.run([str(BUILD), "flags"], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "-DGGML_NATIVE=OFF -DGGML_AVX2=ON"


def test_installed_llama_library_has_no_amx_instructions():
    llama_cpp = pytest.importorskip("llama_cpp")
    if shutil.which("objdump") is None:
        pytest.skip("needs objdump")
    libs = list((Path(llama_cpp.__file__).parent / "lib").glob("libggml-cpu*.so*"))
    assert libs, "llama_cpp ships its ggml CPU library in llama_cpp/lib"
    dump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(libs[0])], capture_output=True, text=True).stdout
    assert "vfmadd" in dump  # the disassembly is real
    for mnemonic in ("tilezero", "ldtilecfg", "tdpbssd", "tdpbf16ps"):
        assert mnemonic not in dump


def test_crash_message_names_the_signal_and_the_override():
    message = crash_message(-signal.SIGILL, "Fatal Python error: Illegal instruction\n")
    assert "SIGILL" in message and "illegal instruction" in message
    assert OVERRIDE_VARIABLE in message and "make install" in message
    assert "Fatal Python error" in message
