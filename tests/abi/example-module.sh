#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The example module of docs/module-guide.md builds out of tree against what `make install`
# puts in place: install the header, libagentbroker-module and agentbroker-module.pc of this
# build into a scratch DESTDIR, build docs/examples/hello with its own Makefile and
# pkg-config pointed there, and check the result: it exports exactly the descriptor, dlopen
# (RTLD_NOW) finds a valid one, and the real agentbroker-worker loads it, answers init with
# its tools and runs a call.
. "$(dirname "$0")/../integration/lib.sh"

require_tools cc make pkg-config nm
WORKER=$ABS_TOP_BUILDDIR/tests/bin/agentbroker-worker  # not the libtool wrapper
[ -f "$ABS_TOP_BUILDDIR/Makefile" ] || unmet "no build in $ABS_TOP_BUILDDIR"
require_built "$WORKER"

setup_testdir
STAGE=$T/stage

# 1. install the development files into a DESTDIR (a sub-make of the build, on its own).
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ABS_TOP_BUILDDIR" DESTDIR="$STAGE" \
	install-agentbrokerincludeHEADERS install-libLTLIBRARIES install-pkgconfigDATA >"$T/install.log" 2>&1; then
	pass "make install of the header, the library and the .pc into DESTDIR"
else
	fail "make install of the header, the library and the .pc into DESTDIR" "$(tail -n 20 "$T/install.log")"
	done_testing
fi
pc=$(find "$STAGE" -name agentbroker-module.pc | head -n 1)
header=$(find "$STAGE" -path '*/include/agentbroker/module.h' | head -n 1)
lib=$(find "$STAGE" -name 'libagentbroker-module.so.*' -type f | head -n 1)
ok "agentbroker-module.pc is installed" test -n "$pc"
ok "<agentbroker/module.h> is installed" test -n "$header"
ok "libagentbroker-module.so is installed" test -n "$lib"
[ -n "$pc" ] && [ -n "$header" ] && [ -n "$lib" ] || done_testing
libdir=$(dirname "$lib")

# pkg-config as a module author would use it, with the staged tree as its sysroot.
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$STAGE PKG_CONFIG_LIBDIR=$(dirname "$pc")
ok "pkg-config knows agentbroker-module" pkg-config --exists agentbroker-module
like "$(pkg-config --cflags agentbroker-module)" "-I$STAGE/" "its cflags point at the installed headers"
like "$(pkg-config --libs agentbroker-module)" "-lagentbroker-module" "its libs name the library"
# moduledir: where agentbroker-mcp of the same build loads packaged modules from (its --help
# states its default directories), under the libdir the package uses (multiarch on Debian).
moduledir=$(PKG_CONFIG_SYSROOT_DIR= pkg-config --variable=moduledir agentbroker-module)
is "$moduledir" "$(PKG_CONFIG_SYSROOT_DIR= pkg-config --variable=libdir agentbroker-module)/agentbroker/modules" \
	"pkg-config --variable=moduledir is LIBDIR/agentbroker/modules"
mcp_help=$("$ABS_TOP_BUILDDIR/agentbroker-mcp" --help 2>&1 | tr -s ' \n' ' ')
like "$mcp_help" "--modules DIR .*default $moduledir " "agentbroker-mcp loads modules from moduledir by default"

# 2. build the example out of tree with its own Makefile, nothing from the source tree.
cp -r "$ABS_TOP_SRCDIR/docs/examples/hello" "$T/hello"
rm -f "$T/hello/hello.so"
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$T/hello" CFLAGS="-O2 -Werror" >"$T/build.log" 2>&1; then
	pass "the example builds with -Werror against the installed files"
else
	fail "the example builds with -Werror against the installed files" "$(tail -n 30 "$T/build.log")"
	done_testing
fi
unlike "$(cat "$T/build.log")" "-I[^ ]*$ABS_TOP_SRCDIR|-I[^ ]*$ABS_TOP_BUILDDIR" "the build used no header from the tree"
is "$(nm -D --defined-only "$T/hello/hello.so" | awk '{ print $3 }' | tr '\n' ' ')" "agentbroker_module " \
	"hello.so exports exactly the descriptor"
like "$(readelf -d "$T/hello/hello.so" 2>/dev/null)" "NEEDED.*libagentbroker-module\.so\.1" \
	"hello.so links libagentbroker-module.so.1"
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$T/hello" install DESTDIR="$T/inst" MODULEDIR=/modules \
	>"$T/make-install.log" 2>&1
is "$(stat -c "%a %U" "$T/inst/modules/hello.so" 2>/dev/null)" "644 $(id -un)" \
	"make install puts it in MODULEDIR, root-owned, mode 0644"

# 3. load it: dlopen(RTLD_NOW) with a checker built against the installed header, and the
# worker (the same checker drives it over the frame protocol of common/frame.h).
cat >"$T/check.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <agentbroker/module.h>

static int put(int fd, const char *json)
{
	uint32_t n = (uint32_t)strlen(json);
	unsigned char h[4] = { n >> 24, n >> 16, n >> 8, n };
	return write(fd, h, 4) == 4 && write(fd, json, n) == (ssize_t)n ? 0 : -1;
}

static int get(int fd, char *buf, size_t size)
{
	unsigned char h[4];
	size_t n, got = 0;
	if (read(fd, h, 4) != 4)
		return -1;
	n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
	if (n >= size)
		return -1;
	while (got < n) {
		ssize_t k = read(fd, buf + got, n - got);
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	buf[n] = '\0';
	return 0;
}

int main(int argc, char **argv)
{
	/* check MODULE.so [WORKER] */
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		printf("dlopen: %s\n", dlerror());
		return 1;
	}
	const struct abm_module *m = dlsym(h, ABM_MODULE_SYMBOL);
	if (!m) {
		printf("no descriptor\n");
		return 1;
	}
	printf("type %s major %u minor %u name %s tools", m->type == ABM_MODULE_TYPE ? "ok" : "bad",
	       ABM_GET_MAJOR(m->abi_version), ABM_GET_MINOR(m->abi_version), m->name);
	for (size_t i = 0; i < m->n_tools; i++)
		printf(" %s", m->tools[i].name);
	printf("\n");
	if (argc < 3)
		return 0;

	int sv[2], mfd = open(argv[1], O_RDONLY | O_CLOEXEC);
	static char buf[1 << 20];
	if (mfd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 1;
	pid_t pid = fork();
	if (pid == 0) {
		int a = dup(mfd), b = dup(sv[1]);   /* above 4, without close-on-exec */
		/* The environment the host gives a worker has no sanitizer options: the sanitizer
		 * build's worker turns LeakSanitizer off itself (its seccomp filter refuses the
		 * ptrace LeakSanitizer needs at exit), and inherited options would turn it on. */
		unsetenv("ASAN_OPTIONS");
		unsetenv("LSAN_OPTIONS");
		dup2(a, 3);
		dup2(b, 4);
		execl(argv[2], argv[2], "--module-fd", "3", "--control-fd", "4", "--name", m->name, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	if (put(sv[0], "{\"t\":\"init\",\"config\":{\"greeting\":\"Hi\"},\"broker\":\"/nonexistent\"}") < 0 ||
	    get(sv[0], buf, sizeof(buf)) < 0)
		return 1;
	printf("init: %s\n", buf);
	if (put(sv[0], "{\"t\":\"call\",\"id\":1,\"tool\":\"greet\",\"args\":{\"name\":\"Ada\",\"times\":2},"
		       "\"token\":\"abt_x\",\"run\":\"r\",\"max_bytes\":32768}") < 0)
		return 1;
	for (;;) {   /* progress frames, then the result */
		if (get(sv[0], buf, sizeof(buf)) < 0)
			return 1;
		printf("frame: %s\n", buf);
		if (strstr(buf, "\"t\":\"result\""))
			break;
	}
	close(sv[0]);
	int status;
	waitpid(pid, &status, 0);
	printf("worker exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	return 0;
}
EOF
# A library built with sanitizers (configure --enable-sanitizers) needs their runtime loaded
# first: build the checker with them too.
san=()
if readelf -d "$lib" | grep -q 'NEEDED.*libasan'; then san=(-fsanitize=address,undefined); fi
# shellcheck disable=SC2046 # the flags are words
ok "the loader check builds against the installed header" \
	cc -std=gnu11 -Wall -Werror "${san[@]}" -o "$T/check" "$T/check.c" $(pkg-config --cflags agentbroker-module) -ldl
out=$(LD_LIBRARY_PATH=$libdir "$T/check" "$T/hello/hello.so" 2>"$T/check.err")
is "$out" "type ok major 1 minor 1 name hello tools greet sign" "dlopen(RTLD_NOW) finds a valid descriptor" ||
	diag "$(head -n 20 "$T/check.err")"
out=$(LD_LIBRARY_PATH=$libdir timeout 20 "$T/check" "$T/hello/hello.so" "$WORKER" 2>"$T/check.err") ||
	diag "the checker failed:" "$(head -n 20 "$T/check.err")"
like "$out" '^init: \{"t":"hello","abi":65537,"module":"hello"' "agentbroker-worker loads it and answers init with hello"
like "$out" '"name":"hello\.greet".*"name":"hello\.sign"' "the hello frame lists hello.greet and hello.sign"
like "$out" '"outputSchema":\{"type":"object"' "hello.greet's output schema is there"
like "$out" '^frame: \{"t":"progress","id":1,"progress":2,"total":2' "the call reports progress"
like "$out" '^frame: \{"t":"result","id":1,"isError":false,"content":\[\{"type":"text","text":"Hi, Ada!"\}' \
	"the call runs with the configured greeting"
like "$out" '"structuredContent":\{"greeting":"Hi, Ada!","times":2\}' "with its structured result"
like "$out" '^worker exit 0$' "the worker exits 0 at the end of its input" ||
	diag "the worker's stderr:" "$(tail -n 30 "$T/check.err")"
done_testing
