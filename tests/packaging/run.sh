#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/packaging/run.sh — the Debian and RPM packages, end to end (TAP).
#
#   1. `make dist` and `make distcheck`; the Debian packages built from that tarball with
#      dpkg-buildpackage -us -uc -b; lintian: no error, no warning that
#      debian/*.lintian-overrides does not explain; what each package holds and depends
#      on; the symbols file.
#   2. `apt install ./*.deb`; the user, the directories and the units are there; the
#      installed broker started the way its unit would start it (the unit's User=,
#      Group=, capabilities, credentials, UMask= and ExecStart=, its socket passed by
#      socket activation); the installed host, started per connection the way
#      agentbroker-mcp.socket + agentbroker-mcp@.service would, serves MCP calls through
#      it, and the audit records are found in the real auditd log. A reinstall keeps a
#      modified conffile; `apt purge` removes everything but the system user and group.
#   3. An out-of-tree module (hello.c here) built against the installed -dev package with
#      `pkg-config --cflags --libs agentbroker-module`, dropped into the module directory:
#      its tool is served.
#   4. `rpmbuild -bb` of rpm/agentbroker.spec from the same tarball: three RPMs, their
#      files and modes, their scriptlets; rpmlint: no error.
#   5. `systemd-analyze verify` and `systemd-analyze security --offline=true` of every
#      installed unit: clean, exposure <= 2.0 for the broker and <= 3.0 for the host.
#
# Needs root, auditd and journald (scripts/start-services) and the packaging tools
# (scripts/setup); otherwise it skips (fails under CI=true). It builds the project twice
# and installs packages system-wide, so it is not part of `make check`: scripts/run-tests
# runs it as a step of its own. It refuses to start while agentbroker packages are
# installed or a broker serves /run/agentbroker/broker.sock, and leaves the machine as it
# found it (packages purged, its processes stopped, the user removed if it made it).
#
# Environment: KEEP_TESTDIR=1 keeps the work directory (builds, logs, packages).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
# shellcheck disable=SC2034 # lib.sh names the test directory after it
TEST_NAME=packaging

SRCDIR=$ABS_TOP_SRCDIR
PACKAGES=(agentbroker agentbroker-modules libagentbroker-module1 libagentbroker-module-dev)
BROKER_SOCK=/run/agentbroker/broker.sock
NOTIFY_SOCK=/run/ab-packaging-notify.$$.sock
CREDS_DIR=/run/credentials/agentbroker.service
UNITDIR=/lib/systemd/system
BROKER_MAX_EXPOSURE=2.0
HOST_MAX_EXPOSURE=3.0

require_root
why=$(services_problem)
[ -z "$why" ] || unmet "$why"
require_tools dpkg-buildpackage dh dh_installsysusers lintian rpmbuild rpmlint rpm apt apt-get \
	dpkg-deb dpkg-query dpkg-statoverride systemd-analyze systemd-socket-activate setpriv \
	journalctl ausearch jq perl cc pkg-config readelf nm openssl sha256sum man
[ -x "$SRCDIR/configure" ] || unmet "$SRCDIR/configure is missing: run autoreconf -fi (scripts/setup does)"
for p in "${PACKAGES[@]}"; do
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$st" in
	"" | "un "*) ;;
	*) unmet "the package $p is installed here ($st): this test installs and purges the packages itself" ;;
	esac
done
if [ -S "$BROKER_SOCK" ] && agentbrokerctl --socket "$BROKER_SOCK" status >/dev/null 2>&1; then
	unmet "a broker serves $BROKER_SOCK: this test starts the installed broker there"
fi

ARCH=$(dpkg --print-architecture)
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
[ -n "$MA" ] || unmet "dpkg-architecture cannot name the multiarch triplet"
ID=$(unique_id)
# The uid the host instances run as: DynamicUser= would pick one in 61184..65519.
DYN_UID=''
for ((u = 65000; u < 65500; u++)); do
	if ! getent passwd "$u" >/dev/null && ! getent group "$u" >/dev/null && ! pgrep -U "$u" >/dev/null; then
		DYN_UID=$u
		break
	fi
done
[ -n "$DYN_UID" ] || unmet "no free uid in 65000..65499 for the host's dynamic user"

setup_testdir
export DEBIAN_FRONTEND=noninteractive

# --- clean-up: runs at exit, whatever happened -------------------------------------------
user_existed=0 group_existed=0
getent passwd agentbroker >/dev/null && user_existed=1
getent group agentbroker >/dev/null && group_existed=1
group_gid=$(getent group agentbroker | cut -d: -f3)
INSTALLED=() UNIT_BROKER_PID='' MCP_LISTENER_PID='' SBX_HOST_PID='' DELEG=() NOTIFY_PID='' made_local_moddir=0 made_policy_d=0 made_credstore=0
# The postinst generates the default policy's keys when they are absent and creates the fs
# root: start without them, and take away at exit what this test made.
[ -d /etc/credstore ] || made_credstore=1
made_srv=0
[ -e /srv/agentbroker ] || made_srv=1
rm -f /etc/credstore/agentbroker.sign_hmac /etc/credstore/agentbroker.identity

# stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL; STOP_RC is its exit status.
STOP_RC=''
stop_pid() {
	local pid=$1 i
	if kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			# A child that exited but was not waited for yet still answers kill -0.
			[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ] || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	STOP_RC=$?
}

# shellcheck disable=SC2317 # called at exit, through add_cleanup
cleanup() {
	local d
	[ -z "$MCP_LISTENER_PID" ] || stop_pid "$MCP_LISTENER_PID"
	[ -z "$SBX_HOST_PID" ] || stop_pid "$SBX_HOST_PID"
	# The delegated cgroups and what the host made in them (its processes are gone with it).
	for d in "${DELEG[@]}"; do
		find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
		rmdir "$d" 2>/dev/null
	done
	[ -z "$UNIT_BROKER_PID" ] || stop_pid "$UNIT_BROKER_PID"
	[ -z "$NOTIFY_PID" ] || stop_pid "$NOTIFY_PID"
	rm -rf "$CREDS_DIR" /run/agentbroker-mcp "$NOTIFY_SOCK"
	rm -f /usr/local/lib/agentbroker/modules/hello.so /etc/agentbroker/policy.d/50-packaging-hello.yaml
	[ "$made_local_moddir" -eq 0 ] || rmdir /usr/local/lib/agentbroker/modules /usr/local/lib/agentbroker 2>/dev/null
	[ "$made_policy_d" -eq 0 ] || rmdir /etc/agentbroker/policy.d 2>/dev/null
	rm -f /etc/credstore/agentbroker.sign_hmac /etc/credstore/agentbroker.identity
	[ "$made_credstore" -eq 0 ] || rmdir /etc/credstore 2>/dev/null
	[ "$made_srv" -eq 0 ] || rmdir /srv/agentbroker 2>/dev/null
	mapfile -t INSTALLED < <(known "${INSTALLED[@]}")
	if [ ${#INSTALLED[@]} -gt 0 ]; then
		echo "# clean-up: purging ${INSTALLED[*]}" >&2
		apt-get purge -y -q "${INSTALLED[@]}" </dev/null >"$T/cleanup-purge.log" 2>&1 ||
			echo "# clean-up: apt-get purge failed: $(tail -n 5 "$T/cleanup-purge.log")" >&2
	fi
	# The packages leave the system user and group (Debian's rule for system users); the
	# test removes them when it made them, so a later run starts from the same state.
	if [ "$user_existed" -eq 0 ] && getent passwd agentbroker >/dev/null; then
		userdel agentbroker 2>/dev/null
	fi
	if [ "$group_existed" -eq 0 ] && getent group agentbroker >/dev/null; then
		groupdel agentbroker 2>/dev/null
	elif [ "$group_existed" -eq 1 ] && ! getent group agentbroker >/dev/null; then
		# userdel takes the user's group along: give back the one that was here.
		groupadd --system --gid "$group_gid" agentbroker 2>/dev/null
	fi
	return 0
}
add_cleanup cleanup

# --- helpers -----------------------------------------------------------------------------

# known PKG...: those of PKG that dpkg knows (installed, or removed with conffiles left).
known() {
	local p st
	for p in "$@"; do
		st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)
		case "$st" in "" | "un "*) ;; *) echo "$p" ;; esac
	done
}

# unit_get FILE KEY: the values of KEY= in the unit FILE, one per line, in file order.
unit_get() { sed -n -E "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*(.*[^[:space:]])?[[:space:]]*$/\\1/p" "$1"; }

# unit_last FILE KEY: the last value of KEY= (what systemd uses for single-value keys).
unit_last() { unit_get "$1" "$2" | tail -n 1; }

# caps_arg "CAP_A CAP_B": the setpriv capability list "-all,+a,+b".
caps_arg() {
	local c out=-all
	for c in $1; do
		c=${c#CAP_}
		out="$out,+${c,,}"
	done
	echo "$out"
}

# exposure FILE: the overall exposure that systemd-analyze security --offline gives FILE.
exposure() {
	systemd-analyze security --offline=true "$1" 2>/dev/null |
		sed -n -E 's/.*Overall exposure level for [^:]*: ([0-9.]+).*/\1/p'
}

# le A B: true when the decimal A <= B.
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

# sandbox_args UNIT: set SANDBOX to the command prefix that gives a process what UNIT's
# ProtectSystem=strict, ProtectProc=, ProcSubset=, PrivateTmp=, ProtectHome= and
# PrivateNetwork= give it under systemd: a mount namespace of its own where the file
# system is read-only but for the unit's RuntimeDirectory=, StateDirectory=,
# CacheDirectory=, LogsDirectory= and ReadWritePaths=, with its own /proc (hidepid=,
# subset=), empty /tmp and /var/tmp, hidden /home, /root and /run/user; and a network
# namespace of its own. (Not emulated: the seccomp filter, PrivateDevices= and the
# kernel-object protections.)
SANDBOX=()
sandbox_args() {
	local unit=$1 pp subset opts=() tmp home system rw=() d
	pp=$(unit_last "$unit" ProtectProc)
	subset=$(unit_last "$unit" ProcSubset)
	case "$pp" in invisible | noaccess | ptraceable) opts+=("hidepid=$pp") ;; esac
	[ "$subset" != pid ] || opts+=(subset=pid)
	tmp=$(unit_last "$unit" PrivateTmp)
	home=$(unit_last "$unit" ProtectHome)
	system=$(unit_last "$unit" ProtectSystem)
	for d in $(unit_get "$unit" RuntimeDirectory); do rw+=("/run/$d"); done
	for d in $(unit_get "$unit" StateDirectory); do rw+=("/var/lib/$d"); done
	for d in $(unit_get "$unit" CacheDirectory); do rw+=("/var/cache/$d"); done
	for d in $(unit_get "$unit" LogsDirectory); do rw+=("/var/log/$d"); done
	for d in $(unit_get "$unit" ReadWritePaths); do rw+=("${d#-}"); done
	SANDBOX=(unshare --mount --propagation private)
	[ "$(unit_last "$unit" PrivateNetwork)" != yes ] || SANDBOX+=(--net)
	SANDBOX+=(-- "$T/sandbox" "$(IFS=,; echo "${opts[*]}")" "${tmp:-no}" "${home:-no}" "${system:-no}" "${rw[*]}")
}
cat >"$T/sandbox" <<'EOF_SANDBOX'
#!/bin/sh
# sandbox PROC_OPTIONS PRIVATE_TMP PROTECT_HOME PROTECT_SYSTEM "WRITABLE..." CMD...: mount
# what the unit would, in the mount namespace unshare made, then exec CMD.
set -e
if [ "$4" = strict ]; then
	# Every directory at the top is made read-only (a read-only bind mount stacked on it,
	# with its submounts), /run too; then the unit's own directories are made writable.
	for d in /*; do
		case "$d" in /proc | /sys | /dev | /tmp) continue ;; esac
		[ -d "$d" ] && [ ! -L "$d" ] || continue
		mount --rbind "$d" "$d"
		mount -o remount,bind,ro "$d"
	done
	for w in $5; do
		[ -d "$w" ] || continue
		mount --bind "$w" "$w"
		mount -o remount,bind,rw "$w"
	done
fi
[ -z "$1" ] || mount -t proc -o "$1" proc /proc
if [ "$2" = yes ]; then
	mount -t tmpfs -o mode=1777 tmpfs /tmp
	mount -t tmpfs -o mode=1777 tmpfs /var/tmp
fi
if [ "$3" = yes ] || [ "$3" = read-only ] || [ "$3" = tmpfs ]; then
	for d in /home /root /run/user; do
		[ ! -d "$d" ] || mount -t tmpfs -o ro,mode=0755 tmpfs "$d"
	done
fi
shift 5
exec "$@"
EOF_SANDBOX
chmod 0755 "$T/sandbox"

# mcp_session NAME SOCKET < LINES: send the JSON-RPC lines over one connection to SOCKET,
# half-close it (end of input), read every answer into $T/NAME.out.
mcp_session() {
	perl -MIO::Socket::UNIX -MSocket -e '
		alarm 60;
		my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $ARGV[0])
			or die "connect $ARGV[0]: $!\n";
		local $/;
		my $in = <STDIN>;
		print $s $in;
		$s->flush;
		shutdown($s, 1) or die "shutdown: $!\n";
		my $out = <$s>;
		print $out // "";' "$2" >"$T/$1.out" 2>"$T/$1.err"
}

# resp NAME ID JQ: jq -r JQ of the answer with this id in session NAME.
resp() { jq -c --argjson id "$2" 'select(.id == $id)' "$T/$1.out" 2>/dev/null | head -n 1 | jq -r "$3"; }

INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"tests/packaging","version":"1"}}}'
INITIALIZED='{"jsonrpc":"2.0","method":"notifications/initialized"}'
LIST='{"jsonrpc":"2.0","id":2,"method":"tools/list"}'

# =========================================================================================
# make dist
# =========================================================================================
mkdir -p "$T/dist"
if (cd "$T/dist" && "$SRCDIR/configure" >configure.log 2>&1 && make dist >dist.log 2>&1); then
	pass "make dist in a fresh build directory"
else
	bail_out "make dist failed: $(tail -n 20 "$T/dist/dist.log" "$T/dist/configure.log" 2>/dev/null)"
fi
V=$(sed -n -E 's/^PACKAGE_VERSION = (.*)$/\1/p' "$T/dist/Makefile")
TARBALL=$T/dist/agentbroker-$V.tar.gz
ok "the tarball is agentbroker-$V.tar.gz" test -f "$TARBALL"
tar -tzf "$TARBALL" >"$T/tarball.list"
absent=''
for f in debian/control debian/rules debian/changelog debian/libagentbroker-module1.symbols \
	rpm/agentbroker.spec rpm/agentbroker.rpmlintrc systemd/agentbroker.service.in \
	systemd/agentbroker-mcp@.service.in systemd/agentbroker.sysusers LICENSE \
	man/agentbroker-mcp.1 tests/packaging/run.sh tests/packaging/hello.c; do
	grep -qx "agentbroker-$V/$f" "$T/tarball.list" || absent="$absent $f"
done
is "$absent" "" "the tarball holds debian/, rpm/, the unit templates, LICENSE and this test"
# make distcheck: the tarball builds, passes the build-time tests (those of make
# check-build-time, as a package build runs them; the whole suite already ran in both
# builds: a third run would add minutes and prove nothing about the tarball), installs under
# its own prefix (the systemd directories as well) and uninstalls cleanly.
start=$(date +%s)
# (Without this test's T and SOCK: the integration tests' lib.sh would take them as theirs.
# Without CI: the suites that need npm packages, which a tarball does not carry, skip.)
if (cd "$T/dist" && env -u T -u SOCK -u ABS_TOP_SRCDIR -u ABS_TOP_BUILDDIR -u CI \
	timeout 1500 make distcheck TESTS='$(BUILD_TIME_TESTS)' >distcheck.log 2>&1 </dev/null); then
	pass "make distcheck ($(($(date +%s) - start)) s)"
else
	fail "make distcheck" "$(grep -E '^(FAIL|ERROR|XPASS):' "$T/dist/distcheck.log" | head -n 20)" "$(tail -n 20 "$T/dist/distcheck.log")"
fi
diag "make distcheck: $(grep -E '^# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR):' "$T/dist/distcheck.log" | tr -s ' ' | paste -sd' ' -)"
deb_version=$(tar -xzf "$TARBALL" -O "agentbroker-$V/debian/changelog" | head -n 1 | sed -n -E 's/^agentbroker \(([^)]*)\).*/\1/p')
is "${deb_version%-*}" "$V" "debian/changelog's upstream version is configure's ($V)"
is "$(tar -xzf "$TARBALL" -O "agentbroker-$V/rpm/agentbroker.spec" | sed -n -E 's/^Version:[[:space:]]+//p')" "$V" \
	"rpm/agentbroker.spec's Version is configure's ($V)"

# =========================================================================================
# 1. Debian packages
# =========================================================================================
mkdir -p "$T/deb"
tar -xzf "$TARBALL" -C "$T/deb"
start=$(date +%s)
if (cd "$T/deb/agentbroker-$V" &&
	DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" timeout 1500 dpkg-buildpackage -us -uc -b) \
	>"$T/deb/build.log" 2>&1 </dev/null; then
	pass "dpkg-buildpackage -us -uc -b from the tarball ($(($(date +%s) - start)) s; DEB_BUILD_OPTIONS=nocheck: the suite ran already)"
else
	bail_out "dpkg-buildpackage failed: $(tail -n 30 "$T/deb/build.log")"
fi
DEBS=()
for p in "${PACKAGES[@]}"; do
	deb=$T/deb/${p}_${deb_version}_$ARCH.deb
	ok "built $(basename "$deb")" test -f "$deb"
	DEBS+=("$deb")
done
CHANGES=$T/deb/agentbroker_${deb_version}_$ARCH.changes

# --- lintian -------------------------------------------------------------------------------
lintian --pedantic --info --display-info --show-overrides "$CHANGES" >"$T/lintian.out" 2>"$T/lintian.err"
lintian_rc=$?
tags=$(grep -E '^[EWIPXO]: ' "$T/lintian.out" | sort -u)
diag "lintian --pedantic --info --show-overrides (exit $lintian_rc):" "${tags:-(no tags)}"
is "$(grep -c '^E: ' <<<"$tags")" 0 "lintian: no errors"
is "$(grep -c '^W: ' <<<"$tags")" 0 "lintian: no warnings that are not overridden"
unlike "$tags" 'unused-override|mismatched-override' "lintian: every override is still needed and matches"
# Every override line must follow a comment that gives its reason.
unexplained=''
for f in "$T/deb/agentbroker-$V"/debian/*.lintian-overrides; do
	unexplained+=$(awk -v f="${f##*/}" '
		/^[[:space:]]*#/ { reason = 1; next }
		/^[[:space:]]*$/ { reason = 0; next }
		{ if (!reason) print f ": " $0 }' "$f")
done
is "$unexplained" "" "every lintian override has a written reason above it"

# --- contents and dependencies ---------------------------------------------------------------
# has_files DEB PATH...: every PATH (./-relative, as dpkg-deb -c prints it) is in DEB.
has_files() {
	local deb=$1 list p absent=''
	shift
	list=$(dpkg-deb -c "$deb" | awk '{ print $6 }')
	for p in "$@"; do grep -qxF -- "$p" <<<"$list" || absent="$absent $p"; done
	is "$absent" "" "$(basename "$deb") holds ${*##*/}"
}
for deb in "${DEBS[@]}"; do
	diag "$(basename "$deb"): Depends: $(dpkg-deb -f "$deb" Depends)" \
		"$(dpkg-deb -c "$deb" | awk '$6 !~ /\/$/ { print "  " $1, $2, $6, $7, $8 }')"
done
has_files "${DEBS[0]}" ./usr/sbin/agentbrokerd ./usr/bin/agentbrokerctl ./usr/bin/agentbroker-mcp \
	./usr/libexec/agentbroker/agentbroker-worker ./usr/libexec/agentbroker/agentbroker-mcp-net \
	./etc/agentbroker/policy.yaml \
	./lib/systemd/system/agentbroker.service ./lib/systemd/system/agentbroker.socket \
	./lib/systemd/system/agentbroker-mcp.socket ./lib/systemd/system/agentbroker-mcp@.service \
	./usr/lib/sysusers.d/agentbroker.conf ./usr/lib/tmpfiles.d/agentbroker.conf \
	./usr/lib/systemd/catalog/agentbroker.catalog ./usr/share/man/man8/agentbrokerd.8.gz \
	./usr/share/man/man1/agentbrokerctl.1.gz ./usr/share/man/man1/agentbroker-mcp.1.gz \
	./usr/share/man/man5/agentbroker-policy.5.gz ./usr/share/doc/agentbroker/mcp.md
has_files "${DEBS[1]}" ./usr/lib/"$MA"/agentbroker/modules/echo.so \
	./usr/lib/"$MA"/agentbroker/modules/fs.so ./usr/lib/"$MA"/agentbroker/modules/sign.so
has_files "${DEBS[2]}" ./usr/lib/"$MA"/libagentbroker-module.so.1 ./usr/lib/"$MA"/libagentbroker-module.so.1.0.0
has_files "${DEBS[3]}" ./usr/include/agentbroker/module.h ./usr/lib/"$MA"/libagentbroker-module.so \
	./usr/lib/"$MA"/pkgconfig/agentbroker-module.pc \
	./usr/share/doc/libagentbroker-module-dev/module-guide.md \
	./usr/share/doc/libagentbroker-module-dev/examples/hello/hello.c \
	./usr/share/doc/libagentbroker-module-dev/examples/hello/Makefile
is "$(dpkg-deb --ctrl-tarfile "${DEBS[0]}" | tar -xO ./conffiles)" \
	/etc/agentbroker/policy.yaml "agentbroker: the policy is its only conffile"
is "$(dpkg-deb -c "${DEBS[0]}" | awk '$6 ~ /^\.\/usr\/(s?bin|libexec)\// && $1 ~ /^-/ { print $1 }' | sort -u)" \
	-rwxr-xr-x "agentbroker: programs are 0755"
deps0=$(dpkg-deb -f "${DEBS[0]}" Depends)
like "$deps0" "libagentbroker-module1 \\(= $deb_version\\)" \
	"agentbroker depends on exactly its own libagentbroker-module1 (the worker's private entry point)"
like "$deps0" 'libc6 \(>= [^)]+\).*libsystemd0|libsystemd0.*libc6' "agentbroker: \${shlibs:Depends} (libc6, libsystemd0, ...)"
like "$deps0" 'systemd \| systemd-standalone-sysusers' "agentbroker: \${misc:Depends} (a sysusers implementation)"
like "$(dpkg-deb -f "${DEBS[1]}" Depends)" 'libagentbroker-module1 \(>= [0-9]' \
	"agentbroker-modules: \${shlibs:Depends} from the symbols file (libagentbroker-module1 (>= ...))"
like "$(dpkg-deb -f "${DEBS[3]}" Depends)" "libagentbroker-module1 \\(= $deb_version\\)" \
	"libagentbroker-module-dev depends on its library, same version"

# --- the library and its symbols file ----------------------------------------------------------
mkdir -p "$T/x-lib"
dpkg-deb -x "${DEBS[2]}" "$T/x-lib"
LIBSO=$T/x-lib/usr/lib/$MA/libagentbroker-module.so.1
like "$(readelf -d "$LIBSO" 2>&1)" 'SONAME.*\[libagentbroker-module\.so\.1\]' \
	"libagentbroker-module1 holds the soname libagentbroker-module.so.1"
want=$(nm -D --defined-only "$LIBSO" | awk '{ s = $3; sub(/@@/, "@", s); if (s !~ /@/) s = s "@" s; print s }' | sort)
have=$(awk '/^ / { print $1 }' "$T/deb/agentbroker-$V/debian/libagentbroker-module1.symbols" | sort)
is "$have" "$want" "debian/libagentbroker-module1.symbols lists exactly the library's exported symbols"
like "$(dpkg-deb --ctrl-tarfile "${DEBS[2]}" | tar -xO ./symbols)" '^libagentbroker-module\.so\.1 libagentbroker-module1 #MINVER#' \
	"libagentbroker-module1 ships its symbols file"

# =========================================================================================
# 4. RPM packages, from the same tarball
# =========================================================================================
R=$T/rpm
mkdir -p "$R/SOURCES"
cp "$TARBALL" "$R/SOURCES/"
tar -xzf "$TARBALL" -O "agentbroker-$V/systemd/agentbroker.sysusers" >"$R/SOURCES/agentbroker.sysusers"
tar -xzf "$TARBALL" -C "$R" "agentbroker-$V/rpm"
SPEC=$R/agentbroker-$V/rpm/agentbroker.spec
start=$(date +%s)
# --nodeps: the BuildRequires are Debian packages here, unknown to the rpm database;
# --nocheck: the suite ran already.
if timeout 1500 rpmbuild -bb --nodeps --nocheck --define "_topdir $R" "$SPEC" >"$R/build.log" 2>&1 </dev/null; then
	pass "rpmbuild -bb rpm/agentbroker.spec from the tarball ($(($(date +%s) - start)) s)"
else
	fail "rpmbuild -bb rpm/agentbroker.spec from the tarball" "$(tail -n 30 "$R/build.log")"
fi
mapfile -t RPMS < <(find "$R/RPMS" -name '*.rpm' 2>/dev/null | sort)
is "$(printf '%s\n' "${RPMS[@]##*/}" | sed -E "s/-$V-1[^.]*\\.[^.]+\\.rpm\$//" | sort | tr '\n' ' ')" \
	"agentbroker agentbroker-devel agentbroker-modules " "rpmbuild made exactly the three RPMs"
rpm_main=$(printf '%s\n' "${RPMS[@]}" | grep "/agentbroker-$V-")
rpm_mod=$(printf '%s\n' "${RPMS[@]}" | grep "/agentbroker-modules-$V-")
rpm_dev=$(printf '%s\n' "${RPMS[@]}" | grep "/agentbroker-devel-$V-")
# rpm_files RPM: "mode user group flags path" per file.
rpm_files() { rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$1" 2>/dev/null; }
for r in "${RPMS[@]}"; do
	diag "rpm -qlp $(basename "$r") (mode user group flags path):" "$(rpm_files "$r" | grep -v '/.build-id' | sed 's/^/  /')"
done
if [ -n "$rpm_main" ] && [ -n "$rpm_mod" ] && [ -n "$rpm_dev" ]; then
	libdir=$(rpm --eval '%{_libdir}')
	unitdir=$(rpm -qlp "$rpm_main" | sed -n 's|/agentbroker.service$||p')
	main=$(rpm_files "$rpm_main")
	# has_rpm_line FILES LINE...: each "mode user group flags path" LINE is in FILES.
	has_rpm_lines() {
		local files=$1 l absent=''
		shift
		for l in "$@"; do grep -qxF -- "$l" <<<"$files" || absent="$absent [$l]"; done
		echo "$absent"
	}
	is "$(has_rpm_lines "$main" \
		"-rwxr-xr-x root root  /usr/sbin/agentbrokerd" \
		"-rwxr-xr-x root root  /usr/bin/agentbrokerctl" \
		"-rwxr-xr-x root root  /usr/bin/agentbroker-mcp" \
		"-rwxr-xr-x root root  /usr/libexec/agentbroker/agentbroker-worker" \
		"-rwxr-xr-x root root  /usr/libexec/agentbroker/agentbroker-mcp-net" \
		"-rwxr-xr-x root root  $libdir/libagentbroker-module.so.1.0.0" \
		"-rw-r--r-- root root  $unitdir/agentbroker.service" \
		"-rw-r--r-- root root  $unitdir/agentbroker.socket" \
		"-rw-r--r-- root root  $unitdir/agentbroker-mcp.socket" \
		"-rw-r--r-- root root  $unitdir/agentbroker-mcp@.service" \
		"-rw-r--r-- root root  /usr/lib/sysusers.d/agentbroker.conf" \
		"-rw-r--r-- root root  /usr/lib/tmpfiles.d/agentbroker.conf" \
		"-rw-r--r-- root root  /usr/lib/systemd/catalog/agentbroker.catalog")" "" \
		"agentbroker RPM: programs, library, units, sysusers.d, tmpfiles.d, catalog with their modes"
	is "$(has_rpm_lines "$main" "-rw-r----- root agentbroker cn /etc/agentbroker/policy.yaml")" "" \
		"agentbroker RPM: the policy is %config(noreplace), 0640 root:agentbroker"
	is "$(has_rpm_lines "$main" "drwx------ agentbroker agentbroker  /var/lib/agentbroker")" "" \
		"agentbroker RPM: the state directory (0700 agentbroker)"
	like "$(grep ' /usr/share/licenses/agentbroker/LICENSE$' <<<"$main")" '^-rw-r--r-- root root l ' \
		"agentbroker RPM: LICENSE is %license"
	like "$(grep ' /usr/share/doc/agentbroker/mcp.md$' <<<"$main")" '^-rw-r--r-- root root d ' \
		"agentbroker RPM: the documents are %doc, in /usr/share/doc/agentbroker (the units link there)"
	like "$(grep -c ' /usr/share/man/man[158]/agentbroker' <<<"$main")" '^4$' "agentbroker RPM: the four manual pages"
	is "$(has_rpm_lines "$(rpm_files "$rpm_mod")" \
		"-rwxr-xr-x root root  $libdir/agentbroker/modules/echo.so" \
		"-rwxr-xr-x root root  $libdir/agentbroker/modules/fs.so" \
		"-rwxr-xr-x root root  $libdir/agentbroker/modules/sign.so")" "" \
		"agentbroker-modules RPM: echo, fs and sign in $libdir/agentbroker/modules"
	is "$(has_rpm_lines "$(rpm_files "$rpm_dev")" \
		"-rw-r--r-- root root  /usr/include/agentbroker/module.h" \
		"lrwxrwxrwx root root  $libdir/libagentbroker-module.so" \
		"-rw-r--r-- root root  $libdir/pkgconfig/agentbroker-module.pc")" "" \
		"agentbroker-devel RPM: the header, the .so link and the .pc"
	like "$(rpm -qlp "$rpm_dev" 2>/dev/null)" '/module-guide\.md' "agentbroker-devel RPM: the module guide"
	like "$(rpm -qlp "$rpm_dev" 2>/dev/null)" '/examples/hello/hello\.c' "agentbroker-devel RPM: the example module"
	scripts=$(rpm -qp --scripts "$rpm_main" 2>/dev/null)
	like "$(sed -n '/^preinstall/,/^postinstall/p' <<<"$scripts")" 'systemd-sysusers|useradd' \
		"agentbroker RPM: %pre creates the user (%sysusers_create_compat)"
	like "$(sed -n '/^preinstall/,/^postinstall/p' <<<"$scripts")" 'u agentbroker .*/var/lib/agentbroker' \
		"agentbroker RPM: ... from the package's sysusers.d file"
	like "$(sed -n '/^postinstall/,/^preuninstall/p' <<<"$scripts")" 'preset .*agentbroker\.socket|systemd-update-helper install-system-units' \
		"agentbroker RPM: %post presets the units (%systemd_post)"
	like "$(sed -n '/^postinstall/,/^preuninstall/p' <<<"$scripts")" 'agentbroker-first-start --next-steps' \
		"agentbroker RPM: %post generates the policy's keys and the fs root (agentbroker-first-start)"
	like "$(sed -n '/^preuninstall/,/^postuninstall/p' <<<"$scripts")" 'disable --now .*agentbroker\.socket|systemd-update-helper remove-system-units' \
		"agentbroker RPM: %preun stops and disables them (%systemd_preun)"
	like "$(sed -n '/^postuninstall/,$p' <<<"$scripts")" 'try-restart .*agentbroker\.service|systemd-update-helper mark-restart' \
		"agentbroker RPM: %postun restarts the broker on upgrade (%systemd_postun_with_restart)"
	like "$(rpm -qpR "$rpm_main" 2>/dev/null)" '^systemd' "agentbroker RPM: requires systemd (%{?systemd_requires})"
	like "$(rpm -qpR "$rpm_mod" 2>/dev/null)" 'libagentbroker-module\.so\.1\(\)' "agentbroker-modules RPM: requires the module library (automatic)"
	rpmlint -r "$R/agentbroker-$V/rpm/agentbroker.rpmlintrc" "${RPMS[@]}" >"$R/rpmlint.out" 2>&1
	summary=$(grep -E 'packages and [0-9]+ specfiles checked' "$R/rpmlint.out")
	diag "rpmlint -r rpm/agentbroker.rpmlintrc:" "$(grep -E ': [EW]: ' "$R/rpmlint.out" | sort -u)" "$summary"
	like "$summary" '3 packages and 0 specfiles checked; 0 errors' "rpmlint: no errors in the three RPMs"
else
	skip "the RPM checks" "rpmbuild did not make the three RPMs"
fi

# =========================================================================================
# 2. apt install ./*.deb
# =========================================================================================
mapfile -t ALL_DEBS < <(cd "$T/deb" && ls ./*.deb)
for d in "${ALL_DEBS[@]}"; do INSTALLED+=("$(dpkg-deb -f "$T/deb/$d" Package)"); done
if (cd "$T/deb" && apt install -y -q --no-install-recommends "${ALL_DEBS[@]}") </dev/null >"$T/install.log" 2>&1; then
	pass "apt install ./*.deb (${INSTALLED[*]})"
else
	bail_out "apt install ./*.deb failed: $(tail -n 30 "$T/install.log")"
fi
for p in "${PACKAGES[@]}"; do
	is "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" | tr -d ' ')" ii "$p is installed"
done
is "$(/usr/sbin/agentbrokerd --version)" "agentbrokerd $V" "the installed broker runs (agentbrokerd --version)"

IFS=: read -r _ _ AB_UID AB_GID _ AB_HOME AB_SHELL < <(getent passwd agentbroker)
ok "the system user agentbroker exists" test -n "$AB_UID"
ok "... with a system uid ($AB_UID) and the group agentbroker" \
	test "${AB_UID:-99999}" -lt 1000 -a "$(getent group agentbroker | cut -d: -f3)" = "${AB_GID:-x}"
is "$AB_HOME:$AB_SHELL" /var/lib/agentbroker:/usr/sbin/nologin "... with home /var/lib/agentbroker and no login shell"
is "$(stat -c '%a %U %G' /var/lib/agentbroker 2>&1)" "700 agentbroker agentbroker" "/var/lib/agentbroker: 0700 agentbroker (tmpfiles.d)"
is "$(stat -c '%a %U %G' /run/agentbroker 2>&1)" "755 agentbroker agentbroker" "/run/agentbroker: 0755 agentbroker (tmpfiles.d)"
is "$(stat -c '%a %U %G' /etc/agentbroker/policy.yaml 2>&1)" "640 root agentbroker" "/etc/agentbroker/policy.yaml: 0640 root:agentbroker"
like "$(dpkg-statoverride --list /etc/agentbroker/policy.yaml)" '^root agentbroker 0?640 /etc/agentbroker/policy.yaml$' \
	"... kept by a dpkg-statoverride (the administrator's to change)"
ok "agentbroker.socket is enabled (sockets.target.wants)" test -L /etc/systemd/system/sockets.target.wants/agentbroker.socket
ok "agentbroker.service is enabled (multi-user.target.wants)" test -L /etc/systemd/system/multi-user.target.wants/agentbroker.service
ok "agentbroker-mcp.socket is not enabled (the administrator's choice)" \
	not test -e /etc/systemd/system/sockets.target.wants/agentbroker-mcp.socket
like "$(journalctl --list-catalog 2>/dev/null)" '^e97ef9421cc242d3aeec9cbf5d882d60 agentbroker' \
	"the journal catalog knows agentbroker's message ids (systemd's trigger ran journalctl --update-catalog)"

# =========================================================================================
# 5. the installed units: systemd-analyze verify and security
# =========================================================================================
for u in agentbroker.service agentbroker.socket agentbroker-mcp.socket agentbroker-mcp@.service; do
	out=$(systemd-analyze verify "$UNITDIR/$u" 2>&1)
	rc=$?
	diag "systemd-analyze verify $UNITDIR/$u: exit $rc${out:+; }$out"
	ok "systemd-analyze verify $u: clean" test "$rc" -eq 0 -a -z "$out"
done
for pair in "agentbroker.service $BROKER_MAX_EXPOSURE" "agentbroker-mcp@.service $HOST_MAX_EXPOSURE"; do
	read -r u max <<<"$pair"
	e=$(exposure "$UNITDIR/$u")
	diag "systemd-analyze security --offline=true $u: exposure $e; what is not at 0:" \
		"$(systemd-analyze security --offline=true "$UNITDIR/$u" 2>/dev/null | grep -E '^✗' | sed -E 's/[[:space:]]{2,}/  /g')"
	ok "systemd-analyze security --offline=true $u: exposure ${e:-?} <= $max" le "${e:-99}" "$max"
done
svc=$UNITDIR/agentbroker.service
absent=''
for kv in Type=notify WatchdogSec= User=agentbroker Group=agentbroker CapabilityBoundingSet=CAP_AUDIT_WRITE \
	AmbientCapabilities=CAP_AUDIT_WRITE NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
	PrivateDevices=yes "RestrictAddressFamilies=AF_UNIX AF_NETLINK" SystemCallFilter=@system-service \
	MemoryDenyWriteExecute=yes LockPersonality=yes RestrictNamespaces=yes UMask=0077 LoadCredential= \
	RuntimeDirectory=agentbroker StateDirectory=agentbroker Documentation=; do
	grep -q "^$kv" "$svc" || absent="$absent $kv"
done
is "$absent" "" "agentbroker.service sets what the issue asks (Type=notify, WatchdogSec=, CAP_AUDIT_WRITE only, ...)"
absent=''
for kv in "FileDescriptorName=broker" "SocketGroup=agentbroker" "SocketMode=0660"; do
	grep -q "^$kv" "$UNITDIR/agentbroker.socket" || absent="$absent $kv"
done
for kv in "Accept=yes" "ListenStream=/"; do grep -q "^$kv" "$UNITDIR/agentbroker-mcp.socket" || absent="$absent $kv"; done
for kv in "DynamicUser=yes" "SupplementaryGroups=agentbroker" "StandardInput=socket" "StandardOutput=socket"; do
	grep -q "^$kv" "$UNITDIR/agentbroker-mcp@.service" || absent="$absent $kv"
done
is "$absent" "" "the sockets and the host template are wired for socket activation (Accept=yes, stdio on the socket)"

# =========================================================================================
# 2. the installed broker, started the way agentbroker.socket + agentbroker.service would
# =========================================================================================
sock_unit=$UNITDIR/agentbroker.socket
user=$(unit_last "$svc" User) group=$(unit_last "$svc" Group)
read -r -a exec_start <<<"$(unit_last "$svc" ExecStart | sed -E 's/^[-@:+!]+//')"
listen=$(unit_last "$sock_unit" ListenSequentialPacket)
diag "from $svc: User=$user Group=$group UMask=$(unit_last "$svc" UMask)" \
	"CapabilityBoundingSet=$(unit_last "$svc" CapabilityBoundingSet) AmbientCapabilities=$(unit_last "$svc" AmbientCapabilities)" \
	"SecureBits=$(unit_last "$svc" SecureBits) NoNewPrivileges=$(unit_last "$svc" NoNewPrivileges)" \
	"LoadCredential=$(unit_get "$svc" LoadCredential | tr '\n' ' ')" "ExecStart=${exec_start[*]}" \
	"from $sock_unit: ListenSequentialPacket=$listen FileDescriptorName=$(unit_last "$sock_unit" FileDescriptorName)"
if [[ ${exec_start[0]:-} == /* && -x ${exec_start[0]} ]] && ! [[ ${exec_start[*]} =~ [\"\'%\$] ]]; then
	pass "ExecStart= names an installed program with plain arguments (no quoting, specifiers or variables)"
else
	fail "ExecStart= names an installed program with plain arguments" "ExecStart=${exec_start[*]}"
fi
sp=(setpriv --reuid="$user" --regid="$group" --init-groups)
caps=$(caps_arg "$(unit_last "$svc" AmbientCapabilities)")
sp+=(--inh-caps="$caps" --ambient-caps="$caps" --bounding-set="$(caps_arg "$(unit_last "$svc" CapabilityBoundingSet)")")
sb=$(unit_last "$svc" SecureBits)
[ -z "$sb" ] || sp+=(--securebits="$(tr ' ' '\n' <<<"$sb" | sed 's/-/_/g; s/^/+/' | paste -sd, -)")
[ "$(unit_last "$svc" NoNewPrivileges)" != yes ] || sp+=(--no-new-privs)
sandbox_args "$svc"
diag "the unit's sandbox, as far as emulated here: ${SANDBOX[*]}"
# Type=notify and WatchdogSec=: the service manager's notification socket, with the
# watchdog interval of the unit (systemd sets NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID).
wd_usec=$(systemd-analyze timespan "$(unit_last "$svc" WatchdogSec)" 2>/dev/null | sed -n -E 's/^[[:space:]]*μs: ([0-9]+)$/\1/p')
perl -MIO::Socket::UNIX -MSocket -e '
	$| = 1;
	unlink $ARGV[0];
	my $s = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $ARGV[0]) or die "bind $ARGV[0]: $!\n";
	chmod 0666, $ARGV[0];
	while (defined $s->recv(my $m, 4096)) { $m =~ s/\n/ /g; print "$m\n" }' "$NOTIFY_SOCK" >>"$T/notify.log" 2>&1 &
NOTIFY_PID=$!
wait_for 10 test -S "$NOTIFY_SOCK" || bail_out "the notification socket $NOTIFY_SOCK did not appear: $(cat "$T/notify.log")"

# credentials_directory: make $CREDS_DIR as systemd would from the unit's LoadCredential=
# (no SetCredential= here): ID:/absolute/file is copied (missing: the start fails, 243/
# CREDENTIALS); ID:NAME (or ID alone) is looked up in /etc/credstore, /run/credstore and
# /usr/lib/credstore (missing: skipped). Files 0400, the directory 0500, the user's.
# Returns 1 (with the reason on stdout) when systemd would refuse to start the service.
credentials_directory() {
	local c id src d found
	rm -rf "$CREDS_DIR"
	install -d -m 0700 "$CREDS_DIR"
	while IFS= read -r c; do
		[ -n "$c" ] || continue
		id=${c%%:*} src=${c#*:}
		[ "$c" != "$id" ] || src=$id
		if [[ $src == /* ]]; then
			[ -f "$src" ] || { echo "LoadCredential=$c: $src does not exist (243/CREDENTIALS)"; return 1; }
			install -m 0400 -o "$user" -g "$group" "$src" "$CREDS_DIR/$id"
		else
			found=''
			for d in /etc/credstore /run/credstore /usr/lib/credstore; do
				[ -f "$d/$src" ] && { found=$d/$src; break; }
			done
			[ -z "$found" ] || install -m 0400 -o "$user" -g "$group" "$found" "$CREDS_DIR/$id"
		fi
	done < <(unit_get "$svc" LoadCredential)
	chown "$user:$group" "$CREDS_DIR"
	chmod 0500 "$CREDS_DIR"
}

# start_unit_broker: start the installed broker the way agentbroker.socket and
# agentbroker.service would; sets UNIT_BROKER_PID and STATUS (agentbrokerctl status).
start_unit_broker() {
	local why rtmode stmode
	# RuntimeDirectory= and StateDirectory=, as systemd prepares them.
	rtmode=$(unit_last "$svc" RuntimeDirectoryMode) stmode=$(unit_last "$svc" StateDirectoryMode)
	install -d -m "${rtmode:-0755}" -o "$user" -g "$group" "/run/$(unit_last "$svc" RuntimeDirectory)"
	install -d -m "${stmode:-0755}" -o "$user" -g "$group" "/var/lib/$(unit_last "$svc" StateDirectory)"
	why=$(credentials_directory) || bail_out "systemd would not start agentbroker.service: $why"
	install -d -m "$(unit_last "$sock_unit" DirectoryMode)" "$(dirname "$listen")"
	rm -f "$listen"
	: >"$T/notify.log"   # what this start tells the service manager (the listener appends)
	# systemd-socket-activate makes the listening socket and, at the first connection,
	# execs the service's command line with it (LISTEN_FDS, LISTEN_FDNAMES): the pid
	# stays the same.
	(
		umask "$(unit_last "$svc" UMask)"
		cd / || exit 1
		exec systemd-socket-activate --seqpacket -l "$listen" --fdname="$(unit_last "$sock_unit" FileDescriptorName)" \
			-E CREDENTIALS_DIRECTORY="$CREDS_DIR" -E NOTIFY_SOCKET="$NOTIFY_SOCK" \
			-E WATCHDOG_USEC="$wd_usec" -E WATCHDOG_PID="$BASHPID" \
			"${SANDBOX[@]}" "${sp[@]}" -- "${exec_start[@]}"
	) </dev/null >>"$T/broker.out" 2>&1 &
	UNIT_BROKER_PID=$!
	wait_for 10 test -S "$listen" || bail_out "no socket at $listen: $(cat "$T/broker.out")"
	chown "$(unit_last "$sock_unit" SocketUser):$(unit_last "$sock_unit" SocketGroup)" "$listen"
	chmod "$(unit_last "$sock_unit" SocketMode)" "$listen"
	STATUS=$(agentbrokerctl --socket "$listen" status 2>&1)
	diag "agentbrokerctl status:" "$STATUS"
}

# stop_unit_broker: SIGTERM, as systemctl stop would; then what systemd removes
# (RemoveOnStop=, the credentials directory). STOP_RC is the broker's exit status.
stop_unit_broker() {
	stop_pid "$UNIT_BROKER_PID"
	UNIT_BROKER_PID=''
	rm -rf "$CREDS_DIR" "$listen"
}

# --- a fresh install: the postinst generated the default policy's keys -----------------
for f in /etc/credstore/agentbroker.sign_hmac /etc/credstore/agentbroker.identity; do
	is "$(stat -c '%a %U %s' "$f" 2>&1)" "600 root 64" "the postinst generated $f (0600, root, 64 hex characters)"
done
ok "the postinst created the fs module's root /srv/agentbroker" test -d /srv/agentbroker
start_unit_broker
ok "fresh install: the unit's broker starts and serves" grep -q "^pid: *$UNIT_BROKER_PID\$" <<<"$STATUS"
like "$STATUS" 'sign_hmac \(bytes, available\)' "... with the generated secret sign_hmac"
like "$STATUS" 'identity \(ed25519, available\)' "... and the generated secret identity (an Ed25519 seed)"
stop_unit_broker
is "$STOP_RC" 0 "... and stops cleanly on SIGTERM"
rm -f /etc/credstore/agentbroker.sign_hmac /etc/credstore/agentbroker.identity
start_unit_broker
like "$STATUS" "sign_hmac \\(bytes, unavailable\\): credential 'agentbroker.sign_hmac' .* does not exist" \
	"without its key, status reports the secret sign_hmac unavailable, with the reason"
stop_unit_broker

# --- the administrator puts the two secrets where the unit's LoadCredential= looks ---------
[ -d /etc/credstore ] || install -d -m 0700 /etc/credstore
head -c 32 /dev/urandom >/etc/credstore/agentbroker.sign_hmac
openssl genpkey -algorithm ed25519 -out /etc/credstore/agentbroker.identity 2>/dev/null
chmod 0600 /etc/credstore/agentbroker.sign_hmac /etc/credstore/agentbroker.identity
start_unit_broker
ok "the installed broker answers agentbrokerctl status on $listen (socket-activated)" \
	grep -q "^pid: *$UNIT_BROKER_PID\$" <<<"$STATUS"
like "$STATUS" 'sign_hmac \(bytes, available\)' "it got the secret sign_hmac (/etc/credstore/agentbroker.sign_hmac, via \$CREDENTIALS_DIRECTORY)"
like "$STATUS" 'identity \(ed25519, available\)' "it got the secret identity (/etc/credstore/agentbroker.identity)"
pstat=$(cat "/proc/$UNIT_BROKER_PID/status" 2>/dev/null)
is "$(awk '/^Uid:/ { print $2, $3, $4, $5 }' <<<"$pstat")" "$AB_UID $AB_UID $AB_UID $AB_UID" "it runs as the user agentbroker (uid $AB_UID)"
is "$(awk '/^Cap(Prm|Eff|Bnd|Amb):/ { printf "%s ", $2 }' <<<"$pstat")" \
	"0000000020000000 0000000020000000 0000000020000000 0000000020000000 " \
	"its only capability is CAP_AUDIT_WRITE (permitted, effective, bounding, ambient)"
is "$(awk '/^NoNewPrivs:/ { print $2 }' <<<"$pstat")" 1 "no new privileges"
is "$(readlink "/proc/$UNIT_BROKER_PID/exe")" "${exec_start[0]}" "the process is ${exec_start[0]}"
ok "Type=notify: it tells the service manager READY=1 once it serves" wait_for 5 grep -q 'READY=1' "$T/notify.log"

# =========================================================================================
# 2. the installed host, one per connection, as agentbroker-mcp.socket + @.service would
# =========================================================================================
msock=$UNITDIR/agentbroker-mcp.socket msvc=$UNITDIR/agentbroker-mcp@.service
mlisten=$(unit_last "$msock" ListenStream)
read -r -a mexec <<<"$(unit_last "$msvc" ExecStart | sed -E 's/^[-@:+!]+//')"
groups_gids=$(for g in $(unit_last "$msvc" SupplementaryGroups); do getent group "$g" | cut -d: -f3; done | paste -sd, -)
diag "from $msock: ListenStream=$mlisten Accept=$(unit_last "$msock" Accept) SocketGroup=$(unit_last "$msock" SocketGroup) SocketMode=$(unit_last "$msock" SocketMode)" \
	"from $msvc: DynamicUser=$(unit_last "$msvc" DynamicUser) (here: uid $DYN_UID) SupplementaryGroups=$(unit_last "$msvc" SupplementaryGroups) ExecStart=${mexec[*]}"
msp=(setpriv --reuid="$DYN_UID" --regid="$DYN_UID" --groups="$groups_gids" --inh-caps=-all --bounding-set=-all)
[ "$(unit_last "$msvc" NoNewPrivileges)" != yes ] || msp+=(--no-new-privs)
sandbox_args "$msvc"
diag "the template's sandbox, as far as emulated here: ${SANDBOX[*]}"
install -d -m "$(unit_last "$msock" DirectoryMode)" "$(dirname "$mlisten")"
rm -f "$mlisten"
(
	umask "$(unit_last "$msvc" UMask)"
	cd / || exit 1
	exec systemd-socket-activate --accept --inetd -l "$mlisten" "${SANDBOX[@]}" "${msp[@]}" -- "${mexec[@]}"
) </dev/null >"$T/mcp-listener.out" 2>&1 &
MCP_LISTENER_PID=$!
wait_for 10 test -S "$mlisten" || bail_out "no socket at $mlisten: $(cat "$T/mcp-listener.out")"
chown "$(unit_last "$msock" SocketUser):$(unit_last "$msock" SocketGroup)" "$mlisten"
chmod "$(unit_last "$msock" SocketMode)" "$mlisten"

text="packaging-$ID"
args="{\"text\":\"$text\"}"
printf '%s\n' "$INIT" "$INITIALIZED" "$LIST" \
	"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo.echo\",\"arguments\":$args}}" |
	mcp_session echo "$mlisten"
ok "an MCP session over $mlisten (one host for the connection, stdio on the socket)" test -s "$T/echo.out"
is "$(resp echo 1 .result.serverInfo.name)" agentbroker-mcp "initialize is answered by agentbroker-mcp"
is "$(resp echo 2 '[.result.tools[].name] | map(select(. == "echo.echo" or . == "fs.read_file" or . == "sign.hmac_sha256")) | sort | join(" ")')" \
	"echo.echo fs.read_file sign.hmac_sha256" "tools/list serves the installed modules that policy allows"
is "$(resp echo 3 '.result.content[0].text')" "$text" "tools/call echo.echo is served through the installed broker"
[ -s "$T/echo.out" ] || diag "host log:" "$(tail -n 20 "$T/mcp-listener.out")"

rec=$(audit_find tool-call-begin "suid=$DYN_UID" "args_sha256=\"$(printf '%s' "$args" | sha256sum | cut -d' ' -f1)\"" | head -n 1)
ok "auditd logged the call's tool-call-begin (/var/log/audit/audit.log, via ausearch)" test -n "$rec"
diag "$rec"
is "$(audit_field "$rec" tool)" echo.echo "... for the tool echo.echo"
is "$(audit_field "$rec" pid) $(audit_field "$rec" uid)" "$UNIT_BROKER_PID $AB_UID" \
	"... written by the installed broker (pid $UNIT_BROKER_PID, uid agentbroker)"
is "$(audit_field "$rec" exe)" "${exec_start[0]}" "... exe=${exec_start[0]}"
run=$(audit_field "$rec" run)
ok "auditd logged the call's tool-call-end, status ok" test -n "$(audit_find tool-call-end "run=\"$run\"" 'status="ok"')"
ok "the journal has the call too (AGENTBROKER_RUN=$run)" journal_find AGENTBROKER_RUN="$run" AGENTBROKER_OP=tool-call-begin

# =========================================================================================
# 3. an out-of-tree module, built against the installed -dev package
# =========================================================================================
mkdir -p "$T/hello"
cp "$SRCDIR/tests/packaging/hello.c" "$T/hello/"
pc=$(pkg-config --cflags --libs agentbroker-module 2>&1)
diag "pkg-config --cflags --libs agentbroker-module: $pc (from $(pkg-config --variable=pcfiledir agentbroker-module))"
is "$(pkg-config --variable=pcfiledir agentbroker-module)" "/usr/lib/$MA/pkgconfig" "pkg-config finds the installed agentbroker-module.pc"
is "$(pkg-config --variable=moduledir agentbroker-module)" "/usr/lib/$MA/agentbroker/modules" \
	"pkg-config --variable=moduledir agentbroker-module names the packaged modules' (multiarch) directory"
# shellcheck disable=SC2086 # pkg-config's output is a list of flags
if (cd "$T/hello" && cc -std=gnu11 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden -Wl,-z,defs \
	-o hello.so hello.c $pc) >"$T/hello/build.log" 2>&1; then
	pass "hello.c builds with \`pkg-config --cflags --libs agentbroker-module\` (nothing from the source tree)"
else
	fail "hello.c builds with pkg-config --cflags --libs agentbroker-module" "$(cat "$T/hello/build.log")"
fi
like "$(readelf -d "$T/hello/hello.so" 2>&1)" 'NEEDED.*\[libagentbroker-module\.so\.1\]' "hello.so links libagentbroker-module.so.1"
[ -d /usr/local/lib/agentbroker/modules ] || made_local_moddir=1
[ -d /etc/agentbroker/policy.d ] || made_policy_d=1
install -D -m 0644 -o root -g root "$T/hello/hello.so" /usr/local/lib/agentbroker/modules/hello.so
install -d -m 0755 /etc/agentbroker/policy.d
printf '%s\n' '# tests/packaging: allow the out-of-tree module' 'tools:' '  - match: "hello.*"' \
	>/etc/agentbroker/policy.d/50-packaging-hello.yaml
# ExecReload=, as systemctl reload would run it ($MAINPID: the broker).
read -r -a exec_reload <<<"$(unit_last "$svc" ExecReload | sed -E 's/^[-@:+!]+//; s/\$MAINPID|\$\{MAINPID\}/'"$UNIT_BROKER_PID"'/g')"
diag "ExecReload=${exec_reload[*]}"
ok "ExecReload= (${exec_reload[*]}) reloads the policy, with a drop-in allowing hello.*" "${exec_reload[@]}"
ok "... announced with READY=1 \"Serving (policy reloaded)\" once done" \
	wait_for 5 grep -q 'READY=1 STATUS=Serving (policy reloaded)' "$T/notify.log"
ok "... and RELOADING=1 before" grep -q '^RELOADING=1 STATUS=Reloading policy' "$T/notify.log"
printf '%s\n' "$INIT" "$INITIALIZED" "$LIST" \
	'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"hello.greet","arguments":{"name":"packaging"}}}' |
	mcp_session hello "$mlisten"
is "$(resp hello 2 '[.result.tools[].name] | map(select(startswith("hello."))) | join(" ")')" hello.greet \
	"dropped into /usr/local/lib/agentbroker/modules, its tool hello.greet is listed"
is "$(resp hello 3 '.result.content[0].text')" "Hello, packaging!" "hello.greet is served"
ok "auditd logged the hello.greet call" test -n "$(audit_find tool-call-end "suid=$DYN_UID" 'tool="hello.greet"' 'status="ok"')"
rm -f /usr/local/lib/agentbroker/modules/hello.so /etc/agentbroker/policy.d/50-packaging-hello.yaml
[ "$made_local_moddir" -eq 0 ] || rmdir /usr/local/lib/agentbroker/modules /usr/local/lib/agentbroker
[ "$made_policy_d" -eq 0 ] || rmdir /etc/agentbroker/policy.d
made_local_moddir=0 made_policy_d=0

# =========================================================================================
# 2. a run's sandbox under the packaged units: DynamicUser=, Delegate=, the service user
# =========================================================================================
# The installed host with the default policy's profile (agentbroker-mcp --profile default),
# run the way agentbroker-mcp@.service would run it: the uid DynamicUser= picks (setpriv),
# the unit's privileges and sandbox as emulated above, and a cgroup delegated to that uid as
# Delegate=memory pids cpu does it. This machine mounts cgroup v1 controllers (and no
# systemd): for a delegated unit on v1 systemd makes the unit's cgroup in each delegated
# hierarchy and hands the directory and its cgroup.procs and tasks to the service user;
# this test does the same, below its own cgroups, and removes them at the end. The broker is
# the installed one, started above as the unit starts it (the user agentbroker).
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
	skip "the run's sandbox under a delegated cgroup (Delegate=)" \
		"cgroup v2 only here: this test emulates the v1 delegation of the test machines; v2 is tests/unit/test_cgroup's"
else
	sandbox_args "$msvc"
	for c in memory pids cpu; do
		own=$(awk -F: -v c="$c" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' /proc/self/cgroup)
		[ -n "$own" ] && [ -d "/sys/fs/cgroup/$c" ] || bail_out "no cgroup v1 $c hierarchy here (/proc/self/cgroup: $(tr '\n' ' ' </proc/self/cgroup))"
		d=/sys/fs/cgroup/$c${own%/}/agentbroker-packaging-$ID
		mkdir "$d" || bail_out "cannot make the delegated cgroup $d"
		DELEG+=("$d")
		chown "$DYN_UID:$DYN_UID" "$d" "$d/cgroup.procs" "$d/tasks"
	done
	diag "delegated to uid $DYN_UID (Delegate=$(unit_last "$msvc" Delegate)): ${DELEG[*]}"
	: >"$T/mcp.out"
	# The host is put into its unit's cgroups before it is started (as systemd does), then
	# runs with the unit's sandbox and the dynamic uid; its stdin and stdout are the pipes
	# of this coprocess (the socket's connection under systemd).
	coproc SBX {
		for d in "${DELEG[@]}"; do echo "$BASHPID" >"$d/cgroup.procs" || exit 1; done
		umask "$(unit_last "$msvc" UMask)"
		cd / || exit 1
		exec "${SANDBOX[@]}" "${msp[@]}" -- "${mexec[@]}" --profile default 2>"$T/sbx-host.err"
	}
	SBX_HOST_PID=$SBX_PID
	MCP_OUT=${SBX[0]} MCP_IN=${SBX[1]} MCP_PID=$SBX_PID
	r=$(request 1 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"tests/packaging","version":"1"}}')
	is "$(jq -r .result.serverInfo.name <<<"$r")" agentbroker-mcp \
		"agentbroker-mcp --profile default as uid $DYN_UID in its delegated cgroup answers initialize"
	printf '%s\n' "$INITIALIZED" >&"$MCP_IN"
	SBX_RUN=$(sed -n 's/.*info: run \([0-9a-f]*\)$/\1/p' "$T/sbx-host.err" | head -n 1)
	SBX_CG=$(sed -n 's/.*sandbox of profile default, cgroup \(.*\)$/\1/p' "$T/sbx-host.err" | head -n 1)
	diag "host (pid $SBX_PID): $(grep -E 'info: run|sandbox of profile|error|warning' "$T/sbx-host.err")"
	is "$SBX_CG" "${DELEG[0]}/agentbroker-run-$SBX_RUN" \
		"it built the run's sandbox of profile default, its cgroup in the delegated one"
	text="sandboxed-$ID"
	r=$(call 2 echo.echo "{\"text\":\"$text\"}")
	is "$(jq -r '.result.content[0].text' <<<"$r")" "$text" "tools/call echo.echo is served by a worker in the run's sandbox"
	ok "... audited by the installed broker (tool-call-end, status ok, run $SBX_RUN)" \
		test -n "$(audit_find tool-call-end "run=\"$SBX_RUN\"" "suid=$DYN_UID" 'tool="echo.echo"' 'status="ok"')"
	sbx_w=$(head -n 1 "$SBX_CG/cgroup.procs" 2>/dev/null)
	ok "the run's cgroup holds the worker (pid ${sbx_w:-none})" test -n "$sbx_w"
	is "$(awk '{ print $4 }' "/proc/$sbx_w/stat" 2>/dev/null)" "$SBX_PID" "... a child of the host"
	is "$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$sbx_w/status" 2>/dev/null)" "$DYN_UID $DYN_UID $DYN_UID $DYN_UID" \
		"... running as the host's dynamic uid $DYN_UID"
	is "$(awk '/^NSpid:/ { print $NF }' "/proc/$sbx_w/status" 2>/dev/null)" 1 "... as pid 1 of a pid namespace of its own"
	same=''
	for ns in user pid mnt net ipc uts; do
		a=$(readlink "/proc/$sbx_w/ns/$ns" 2>/dev/null) b=$(readlink "/proc/$SBX_PID/ns/$ns" 2>/dev/null)
		[ -n "$a" ] && [ "$a" != "$b" ] || same="$same $ns($a)"
	done
	is "$same" "" "... in user, pid, mnt, net, ipc and uts namespaces other than the host's"
	diag "worker $sbx_w: $(for ns in user pid mnt net ipc uts; do printf '%s ' "$(readlink "/proc/$sbx_w/ns/$ns")"; done)" \
		"host $SBX_PID: $(for ns in user pid mnt net ipc uts; do printf '%s ' "$(readlink "/proc/$SBX_PID/ns/$ns")"; done)"
	is "$(stat -c %u "$SBX_CG" 2>&1)" "$DYN_UID" "the run's cgroup was made by the host's uid ($SBX_CG)"
	lim="$(cat "${DELEG[0]}/agentbroker-run-$SBX_RUN/memory.limit_in_bytes" 2>&1) $(cat "${DELEG[1]}/agentbroker-run-$SBX_RUN/pids.max" 2>&1)"
	lim="$lim $(cat "${DELEG[2]}/agentbroker-run-$SBX_RUN/cpu.cfs_quota_us" 2>&1)/$(cat "${DELEG[2]}/agentbroker-run-$SBX_RUN/cpu.cfs_period_us" 2>&1)"
	is "$lim" "536870912 128 100000/100000" \
		"... with the profile's limits: memory.limit_in_bytes 512M, pids.max 128, cpu 1 (cfs quota/period)"
	inall=''
	for d in "${DELEG[@]}"; do grep -qx "$sbx_w" "$d/agentbroker-run-$SBX_RUN/cgroup.procs" 2>/dev/null && inall="$inall ${d#/sys/fs/cgroup/}"; done
	is "$(wc -w <<<"$inall")" 3 "... the worker is in its memory, pids and cpu cgroups"

	# The end of the host's input: it tears the run down, and the broker writes the record.
	mcp_stop
	SBX_HOST_PID=''
	is "$MCP_RC" 0 "the host exits at the end of its input"
	ok "... no process of the run is left (worker $sbx_w)" not test -d "/proc/$sbx_w"
	rec=$(audit_find run-teardown "$SBX_RUN")
	diag "$rec"
	like "$rec" 'reason="host-exit".*res=success|res=success.*reason="host-exit"' \
		"auditd logged the run's run-teardown (reason host-exit, res=success)"
	is "$(audit_field "$rec" pid)" "$UNIT_BROKER_PID" "... written by the installed broker"
	ok "... and the journal has it (MESSAGE_ID of run-teardown)" \
		journal_find MESSAGE_ID=57935e9a2f94401cbc7bd3cd6d0bdc15 AGENTBROKER_RUN="$SBX_RUN"
	detail=$(journal_field AGENTBROKER_DETAIL MESSAGE_ID=57935e9a2f94401cbc7bd3cd6d0bdc15 AGENTBROKER_RUN="$SBX_RUN" | head -n 1)
	diag "run-teardown: $detail"
	like "$detail" 'processes_left=0( |$)' "... processes_left=0"
	like "$detail" 'cgroup=removed( |$)' "... cgroup=removed"
	left=''
	for d in "${DELEG[@]}"; do [ ! -e "$d/agentbroker-run-$SBX_RUN" ] || left="$left $d/agentbroker-run-$SBX_RUN"; done
	is "$left" "" "the run's cgroups are gone from the memory, pids and cpu hierarchies"
	# What systemd does when the unit stops: its cgroup goes.
	ok "the delegated cgroups are empty and removed" rmdir "${DELEG[@]}"
	DELEG=()
	# (A warning stays: the packaged http module refuses to load without the endpoints the
	# default policy leaves commented out.)
	unlike "$(cat "$T/sbx-host.err")" '(error|critical|alert|emergency):' "the host logged no error" ||
		diag "$(cat "$T/sbx-host.err")"
fi

# Stop as systemd would: the hosts' listener, then the broker (SIGTERM), and what it
# removes itself (RemoveOnStop=, the credentials directory).
stop_pid "$MCP_LISTENER_PID"
MCP_LISTENER_PID=''
wd_s=$(( (${wd_usec:-0} + 999999) / 1000000 ))
if [ "$wd_s" -gt 0 ]; then
	ok "WatchdogSec=${wd_s}s: the broker pings the watchdog (WATCHDOG=1) in time" wait_for "$wd_s" grep -q 'WATCHDOG=1' "$T/notify.log"
else
	fail "WatchdogSec= is set in the unit" "WatchdogSec=$(unit_last "$svc" WatchdogSec)"
fi
stop_unit_broker
is "$STOP_RC" 0 "the broker stops cleanly on SIGTERM"
ok "... and tells the service manager STOPPING=1" grep -q 'STOPPING=1' "$T/notify.log"
diag "what the broker told the service manager:" "$(cat "$T/notify.log")"
stop_pid "$NOTIFY_PID"
NOTIFY_PID=''
rm -f "$NOTIFY_SOCK"
rm -rf /run/agentbroker-mcp

# =========================================================================================
# 2. a reinstall keeps a modified conffile
# =========================================================================================
marker="# local change $ID"
echo "$marker" >>/etc/agentbroker/policy.yaml
if apt-get install -y -q --reinstall "${DEBS[0]}" </dev/null >"$T/reinstall.log" 2>&1; then
	pass "apt-get install --reinstall agentbroker"
else
	fail "apt-get install --reinstall agentbroker" "$(tail -n 20 "$T/reinstall.log")"
fi
ok "... kept the modified /etc/agentbroker/policy.yaml" grep -qxF "$marker" /etc/agentbroker/policy.yaml
ok "... without a .dpkg-new or .dpkg-dist beside it" not ls /etc/agentbroker/policy.yaml.dpkg-*
if apt-get remove -y -q agentbroker </dev/null >"$T/remove.log" 2>&1 &&
	apt install -y -q --no-install-recommends "${DEBS[0]}" </dev/null >"$T/reinstall2.log" 2>&1; then
	pass "apt-get remove agentbroker, then apt install it again"
else
	fail "apt-get remove agentbroker, then apt install it again" "$(tail -n 20 "$T/remove.log" "$T/reinstall2.log")"
fi
ok "... kept the modified /etc/agentbroker/policy.yaml" grep -qxF "$marker" /etc/agentbroker/policy.yaml
is "$(stat -c '%a %U %G' /etc/agentbroker/policy.yaml 2>&1)" "640 root agentbroker" "... and its mode and group"

# =========================================================================================
# 2. apt purge removes everything but what policy says must stay
# =========================================================================================
# The debug symbol packages went with agentbroker's removal above (they depend on it).
mapfile -t INSTALLED < <(known "${INSTALLED[@]}")
dpkg -L "${INSTALLED[@]}" 2>/dev/null | sort -u >"$T/files.before"
if apt-get purge -y -q "${INSTALLED[@]}" </dev/null >"$T/purge.log" 2>&1; then
	pass "apt purge ${INSTALLED[*]}"
	INSTALLED=()
else
	fail "apt purge ${INSTALLED[*]}" "$(tail -n 20 "$T/purge.log")"
fi
left=''
for p in "${PACKAGES[@]}"; do
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)
	case "$st" in "" | "un "*) ;; *) left="$left $p($st)" ;; esac
done
is "$left" "" "no package is left installed or half-removed (no rc state)"
left=$(while IFS= read -r f; do
	[ -d "$f" ] && continue
	[ -e "$f" ] || [ -L "$f" ] && echo "$f"
done <"$T/files.before")
is "$left" "" "every file the packages installed is gone"
left=$(ls -d /etc/agentbroker /var/lib/agentbroker /run/agentbroker /run/agentbroker-mcp \
	/usr/lib/"$MA"/agentbroker /usr/libexec/agentbroker /usr/share/doc/agentbroker 2>/dev/null
	find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled -name '*agentbroker*' 2>/dev/null)
is "$left" "" "the policy, the state and runtime directories and the unit links are gone"
is "$(dpkg-statoverride --list | grep -c agentbroker)" 0 "the statoverride of the policy is gone"
unlike "$(journalctl --list-catalog 2>/dev/null)" '^e97ef9421cc242d3aeec9cbf5d882d60 ' "the catalog entries are gone from the journal's database"
ok "the administrator's secrets in /etc/credstore stay (systemd's shared credential store, not the package's)" \
	test -f /etc/credstore/agentbroker.sign_hmac -a -f /etc/credstore/agentbroker.identity
ok "the system user and group agentbroker stay (files they own may remain; their ids must not be reused)" \
	bash -c 'getent passwd agentbroker >/dev/null && getent group agentbroker >/dev/null'

done_testing
