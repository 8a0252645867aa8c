#!/bin/sh
# test-deb.sh -- the Debian packages, built and used as a user would.
#
# Copies the tree (without build/ and .git/) to a temporary directory, runs
# dpkg-buildpackage -us -uc -b there and lintian on the .changes (any E:
# line fails), and checks the files of the three packages. As root it then
# installs them with dpkg -i, runs /usr/bin/sockit serve on a UNIX socket,
# builds and runs programs against libsockit-dev with pkg-config (shared
# and --static), and purges the packages; otherwise it says it skipped that
# part. Each step is bounded by timeout(1); all it made is removed at exit.
# $packages and the output of pkg-config are word lists, split on purpose:
# shellcheck disable=SC2046,SC2086
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
limit=${PACKAGE_TIMEOUT:-600}       # seconds for the build, and for lintian
packages="sockit libsockit0 libsockit-dev"
start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/sockit-deb.XXXXXX")
server=
installed=

cleanup() {
    [ -z "$server" ] || kill "$server" 2>/dev/null || true
    [ -z "$installed" ] || dpkg -P $packages >/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

say() {
    echo "package-test: $*"
}

fail() {
    echo "package-test: $*" >&2
    exit 1
}

# Not a Debian machine (or not set up as one): nothing to build with.
for tool in dpkg-buildpackage dh lintian cc pkg-config; do
    command -v "$tool" >/dev/null || {
        say "skipped: $tool not found (.ci/install-deps installs it)"
        exit 0
    }
done

version=$(dpkg-parsechangelog -l "$repo/debian/changelog" -S Version)
upstream=${version%-*}
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
lib=usr/lib/$multiarch
src=$work/sockit-$upstream
mkdir "$src"
(cd "$repo" && tar --exclude=./build --exclude=./.git --exclude=__pycache__ \
    -cf - .) | tar -xf - -C "$src"

# Built as a user would build it, not with the variables of a calling make.
unset MAKEFLAGS MFLAGS MAKELEVEL
say "dpkg-buildpackage -us -uc -b (sockit $version)"
(cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
    timeout "$limit" dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 ||
    { tail -40 "$work/build.log"; fail "dpkg-buildpackage failed"; }

say "lintian"
timeout "$limit" lintian "$work/sockit_${version}_"*.changes \
    >"$work/lintian.log" 2>&1 || true
grep -v 'running with root privileges' "$work/lintian.log" || true
! grep -q '^E:' "$work/lintian.log" || fail "lintian reports errors"

# has PACKAGE FILE...: each file (or link) is in the package.
has() {
    deb=$(echo "$work/$1_${version}_"*.deb)
    rm -rf "$work/x" && dpkg-deb -x "$deb" "$work/x"
    shift
    for f in "$@"; do
        [ -e "$work/x/$f" ] || [ -L "$work/x/$f" ] ||
            fail "$(basename "$deb") lacks /$f"
    done
}
has sockit usr/bin/sockit usr/share/man/man1/sockit.1.gz \
    usr/share/doc/sockit/examples/sockit-echo.service \
    usr/share/doc/sockit/examples/sockit-echo.socket \
    usr/share/doc/sockit/examples/sockit-echo-udp.socket
has libsockit0 "$lib/libsockit.so.$upstream" "$lib/libsockit.so.0"
has libsockit-dev usr/include/sockit.h "$lib/libsockit.a" "$lib/libsockit.so" \
    "$lib/pkgconfig/sockit.pc" usr/share/man/man3/libsockit.3.gz
say "the three packages hold their files"

if [ "$(id -u)" != 0 ]; then
    say "skipped installing the packages: dpkg -i needs root"
    say "ok ($(($(date +%s) - start)) s)"
    exit 0
fi
# Purging at the end must leave the machine as it was: so none of them may
# be known to dpkg yet (installed, or removed with its configuration kept),
# nor any of their files be there (a make install with PREFIX=/usr): dpkg
# would overwrite them, and the purge remove them.
for p in $packages; do
    status=$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null || true)
    [ -z "$status" ] || [ "$status" = not-installed ] ||
        { say "skipped installing: $p is $status already"; exit 0; }
done
for p in $packages; do
    for f in $(dpkg-deb -c "$work/${p}_${version}_"*.deb |
        awk '$1 !~ /^d/ { sub("^\\./", "/", $6); print $6 }'); do
        [ ! -e "$f" ] && [ ! -L "$f" ] ||
            { say "skipped installing: $f is there already"; exit 0; }
    done
done

installed=yes
dpkg -i "$work"/sockit_"$version"_*.deb "$work"/libsockit0_"$version"_*.deb \
    "$work"/libsockit-dev_"$version"_*.deb >"$work/dpkg.log" 2>&1 ||
    { cat "$work/dpkg.log"; fail "dpkg -i failed"; }

# The command: serve echo on a UNIX socket, ask it, stop it by its PID.
/usr/bin/sockit serve -s echo "unix:$work/echo.sock" 2>"$work/serve.log" &
server=$!
i=0
until grep -q "^listening on unix:$work/echo.sock\$" "$work/serve.log"; do
    i=$((i + 1))
    [ "$i" -le 100 ] || { cat "$work/serve.log"; fail "no 'listening on' line"; }
    sleep 0.1
done
reply=$(echo hello | timeout 10 /usr/bin/sockit connect "unix:$work/echo.sock")
[ "$reply" = hello ] || fail "echo answered '$reply'"
kill "$server"
wait "$server" || fail "sockit serve exited $? on SIGTERM"
server=
say "/usr/bin/sockit serve: $(cat "$work/serve.log"), echo answered"

# The library: a program built with pkg-config, shared, then --static.
cat >"$work/app.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <sockit.h>

int main(void)
{
    struct sk_endpoint ep;
    char text[SK_ENDPOINT_STRLEN];

    if (strcmp(sk_version(), SK_VERSION) != 0 ||
        sk_endpoint_parse(&ep, "unix:/run/a.sock", NULL) < 0 ||
        sk_endpoint_format(&ep, text, sizeof text) < 0)
        return 1;
    printf("%s %s\n", sk_version(), text);
    return 0;
}
EOF
say "pkg-config --cflags --libs sockit: $(pkg-config --cflags --libs sockit)"
say "pkg-config --static --libs sockit: $(pkg-config --static --libs sockit)"
cc -o "$work/app" "$work/app.c" $(pkg-config --cflags --libs sockit)
cc -o "$work/app-static" "$work/app.c" $(pkg-config --cflags sockit) \
    -Wl,-Bstatic $(pkg-config --static --libs sockit) -Wl,-Bdynamic
for app in app app-static; do
    out=$(timeout 10 "$work/$app") || fail "$app failed"
    [ "$out" = "$upstream unix:/run/a.sock" ] || fail "$app printed '$out'"
done
loaded=$(ldd "$work/app" | awk '$1 == "libsockit.so.0" { print $3 }')
[ "$(readlink -f "$loaded")" = "/$lib/libsockit.so.$upstream" ] ||
    fail "app loads '$loaded', not /$lib/libsockit.so.0"
! ldd "$work/app-static" | grep -q libsockit || fail "app-static needs libsockit"
say "programs built with pkg-config run (shared: $loaded; static)"

dpkg -P $packages >"$work/dpkg.log" 2>&1 ||
    { cat "$work/dpkg.log"; fail "dpkg -P failed"; }
installed=
if [ -e /usr/bin/sockit ] || [ -e "/$lib/libsockit.so.0" ]; then
    fail "files left after dpkg -P"
fi
say "ok, packages purged ($(($(date +%s) - start)) s)"
