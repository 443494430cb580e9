#!/usr/bin/env bash
# Installs Autobahn|Testsuite (wstest 25.10.1, Python 2.7 only) for
# scripts/autobahn/run.sh, on a fresh machine, by itself:
#
#   scripts/autobahn/setup.sh PREFIX
#
# PREFIX/bin/wstest is the result (PREFIX defaults to target/autobahn/py27).
# Does nothing when PREFIX/bin/wstest already runs.
#
# CPython 2.7.18 comes from pyenv (`pyenv root`/versions/2.7.18; CI machines
# and this project's dev machines have it; Debian 12 has no python2): it is
# copied to PREFIX, so nothing of pyenv's is changed. The packages are pinned;
# the machine's Python 3 pip downloads them from PyPI (cp27mu manylinux or
# py2 wheels where they exist, sdists otherwise) into PREFIX.pkgs, and they
# are installed offline with --no-deps. Fails loudly, naming what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
prefix="${1:-$ROOT/target/autobahn/py27}"
pkgs="$prefix.pkgs"

# wsaccel: the C masking and UTF-8 validation autobahn uses when it can
# import them; in pure Python, wstest spends 5 times as long on each case
# (sections 12 and 13 with it: cases 1-6 and 11 of each subsection 254 s -> 49 s).
accelerated() {
  "$prefix/bin/python" -c "import wsaccel.xormask, wsaccel.utf8validator" >/dev/null 2>&1
}

if [ -x "$prefix/bin/wstest" ] && PYTHONWARNINGS=ignore "$prefix/bin/wstest" -a >/dev/null 2>&1 && accelerated; then
  echo "autobahn: wstest already installed in $prefix"
  exit 0
fi

fail() {
  echo "autobahn setup FAILED: $*" >&2
  exit 1
}

pyenv_root="${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}"
src="$pyenv_root/versions/2.7.18"
[ -x "$src/bin/python" ] || fail "no CPython 2.7.18 under pyenv ($src): install it with 'pyenv install 2.7.18'"
pip3="$(command -v pip3 || command -v pip || true)"
[ -n "$pip3" ] || fail "no Python 3 pip to download the packages with"

rm -rf "$prefix"
mkdir -p "$(dirname "$prefix")" "$pkgs"
# bin/python keeps its RUNPATH to $src/lib (the same libpython2.7.so).
cp -a "$src" "$prefix"

wheels="six==1.16.0 jinja2==2.11.3 markupsafe==1.1.1 zope.interface==4.6.0 incremental==16.10.1
  attrs==21.4.0 Automat==20.2.0 hyperlink==21.0.0 idna==2.10 typing==3.10.0.0 constantly==15.1.0
  setuptools==44.0.0 Twisted==19.10.0 pyOpenSSL==19.1.0 cryptography==3.3.2 cffi==1.15.1
  pycparser==2.21 enum34==1.1.10 ipaddress==1.0.23 unittest2==1.1.0 traceback2==1.4.0 linecache2==1.0.0"
# wsaccel is built here from its sdist (its C is in it): a C compiler
# (cc, which Rust's linker needs anyway) and CPython 2.7's headers (pyenv's
# build has them) are enough.
sdists="txaio==2.1.0 autobahn==0.10.9 autobahntestsuite==25.10.1 wsaccel==0.6.2"
for p in $wheels; do
  "$pip3" download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 2.7 \
    --implementation cp --abi cp27mu --platform manylinux1_x86_64 --platform manylinux2010_x86_64 \
    -d "$pkgs" "$p" || fail "pip could not download $p (no network to PyPI?)"
done
for p in $sdists; do
  "$pip3" download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$pkgs" "$p" \
    || fail "pip could not download $p (no network to PyPI?)"
done

export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore
# pip 19.2.3 comes with pyenv's 2.7.18; ensurepip only makes sure.
"$prefix/bin/python" -m ensurepip >/dev/null 2>&1 || true
"$prefix/bin/python" -m pip install -q --no-index --find-links "$pkgs" --no-deps setuptools==44.0.0 \
  || fail "installing setuptools into $prefix"
# shellcheck disable=SC2046 # one package per word
"$prefix/bin/python" -m pip install -q --no-index --find-links "$pkgs" --no-deps \
  $(echo $wheels $sdists | tr ' ' '\n' | grep -v '^setuptools') || fail "installing the packages into $prefix"
"$prefix/bin/wstest" -a || fail "wstest does not run"
accelerated || fail "wsaccel does not import in $prefix (it needs a C compiler, cc, and $src/include/python2.7)"
echo "autobahn: wstest installed in $prefix"
