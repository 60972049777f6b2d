#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The C sources keep the project's style (.clang-format): one check per top-level folder, each
# listing the files clang-format would change. Reformatting is `clang-format -i FILE`; a
# commit that only reformats goes into .git-blame-ignore-revs. Needs no root, no service, no
# build; clang-format from scripts/setup (Debian's clang-format, the version .clang-format was
# written for).
. "$(dirname "$0")/../integration/lib.sh"

SRC=$ABS_TOP_SRCDIR
require_tools clang-format git
[ -f "$SRC/.clang-format" ] || unmet "no .clang-format in $SRC"
[ -e "$SRC/.git" ] || unmet "$SRC is not a git checkout (the files checked are git's)"

dirs=$(git -C "$SRC" ls-files '*.c' '*.h' | cut -d/ -f1 | sort -u)
for d in $dirs; do
	bad=()
	while IFS= read -r f; do
		clang-format --dry-run --Werror "$SRC/$f" >/dev/null 2>&1 || bad+=("$f")
	done < <(git -C "$SRC" ls-files "$d/*.c" "$d/*.h")
	is "${bad[*]}" "" "$d/: every C file is formatted as .clang-format says"
done
done_testing
