#!/usr/bin/env bash
# Builds llama-cpp-python (and, for benchmarks, llama.cpp's llama-server from the same vendored
# source) for the CPU that really runs here, and caches the build outside the clone.
#
#   scripts/build_llama.sh wheel  PYTHON   install llama-cpp-python into PYTHON's environment
#   scripts/build_llama.sh server          print the path of a cached llama-server (built on first use)
#   scripts/build_llama.sh flags           print the CMake arguments in force
#
# Why not pip's default build: GGML_NATIVE compiles with -march=native, and on Intel VMs that
# advertise AMX in /proc/cpuinfo but do not enable it (Sapphire Rapids under some hypervisors)
# ggml's AMX kernels die with SIGILL. So the default keeps -march=native (AVX-512/AVX2 speed) and
# turns AMX off; GCC honours an explicit -mno-* whatever -march says.
# Override with CODERAPI_LLAMA_CMAKE_ARGS (the whole CMake argument string), e.g. a portable
# build: CODERAPI_LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
DEFAULT_CMAKE_ARGS="-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='${NO_AMX}' -DCMAKE_CXX_FLAGS='${NO_AMX}'"
CMAKE_ARGS_USED="${CODERAPI_LLAMA_CMAKE_ARGS:-$DEFAULT_CMAKE_ARGS}"
PATCHES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/llama-patches"
CACHE_ROOT="${CODERAPI_BUILD_CACHE:-${XDG_CACHE_HOME:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache}/coderapi}"

# A build is only reused on the same CPU features, compiler and arguments.
build_key() {
  { echo "$LLAMA_CPP_PYTHON_VERSION"; echo "$CMAKE_ARGS_USED"; grep -m1 '^flags' /proc/cpuinfo || true
    gcc --version 2>/dev/null | head -n1 || true; uname -m; } | sha256sum | cut -c1-16
}

fetch_sdist() {  # $1: python, $2: dir
  local dir="$2"
  if ! ls "$dir"/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
    mkdir -p "$dir"
    "$1" -m pip download --quiet --no-deps --no-binary :all: -d "$dir" "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"
  fi
  ls "$dir"/llama_cpp_python-*.tar.gz
}

# The wheel is built from the sdist with our patches applied (scripts/llama-patches/, each says why);
# its cache key covers them. llama-server, the peer the benchmarks measure against, stays unpatched.
wheel_key() {
  { build_key; cat "$PATCHES_DIR"/*.patch 2>/dev/null || true; } | sha256sum | cut -c1-16
}

cmd_wheel() {
  local python="$1" key dir sdist src patch
  key=$(wheel_key)
  if "$python" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama-cpp-python') != '${LLAMA_CPP_PYTHON_VERSION}')" 2>/dev/null \
     && [ -f "$("$python" -c 'import sys; print(sys.prefix)')/.llama-build-$key" ]; then
    return 0
  fi
  dir="$CACHE_ROOT/llama-cpp-python/$key"
  if ! ls "$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "Building llama-cpp-python ${LLAMA_CPP_PYTHON_VERSION} for this CPU (a few minutes, once): CMAKE_ARGS=${CMAKE_ARGS_USED}" >&2
    sdist=$(fetch_sdist "$python" "$CACHE_ROOT/sdist")
    src=$(mktemp -d)
    tar xzf "$sdist" -C "$src"
    for patch in "$PATCHES_DIR"/*.patch; do
      [ -f "$patch" ] || continue
      (cd "$src"/llama_cpp_python-* && git apply -p1 "$patch")
    done
    mkdir -p "$dir.tmp"
    CMAKE_ARGS="$CMAKE_ARGS_USED" "$python" -m pip wheel --quiet --no-deps --no-cache-dir -w "$dir.tmp" "$src"/llama_cpp_python-*
    rm -rf "$dir" "$src" && mv "$dir.tmp" "$dir"
  fi
  "$python" -m pip install --quiet --force-reinstall --no-deps "$dir"/llama_cpp_python-*.whl
  touch "$("$python" -c 'import sys; print(sys.prefix)')/.llama-build-$key"
}

cmd_server() {
  local key dir src sdist
  key=$(build_key)
  dir="$CACHE_ROOT/llama-server/$key"
  if [ ! -x "$dir/bin/llama-server" ]; then
    sdist=$(fetch_sdist "${PYTHON:-python3}" "$CACHE_ROOT/sdist")
    src=$(mktemp -d)
    tar xzf "$sdist" -C "$src"
    echo "Building llama-server (same vendored llama.cpp, same flags) into $dir" >&2
    eval "cmake -S $src/*/vendor/llama.cpp -B $src/build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF $CMAKE_ARGS_USED" >&2
    cmake --build "$src/build" --target llama-server -j "$(nproc)" >&2
    mkdir -p "$dir/bin" && cp "$src/build/bin/llama-server" "$dir/bin/"
    rm -rf "$src"
  fi
  echo "$dir/bin/llama-server"
}

case "${1:-}" in
  wheel) cmd_wheel "${2:?python}" ;;
  server) cmd_server ;;
  flags) echo "$CMAKE_ARGS_USED" ;;
  *) echo "usage: $0 wheel PYTHON | server | flags" >&2; exit 2 ;;
esac
