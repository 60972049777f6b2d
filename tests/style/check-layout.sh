#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The layout stays readable (docs/architecture.md, "The host's layout"):
#  - no C source or header in host/ has more than MAX_FILE_LINES lines;
#  - no function in the C sources (but tests/) has more than MAX_FUNCTION_LINES lines
#    (from its opening brace to its closing one; comments and strings do not count as braces).
# Function definitions are found the way the project writes them: a body that opens at the
# file's top level after a parameter list (struct, union, enum and initializer bodies are not
# functions). Needs no root, no service, no build.
. "$(dirname "$0")/../integration/lib.sh"

SRC=$ABS_TOP_SRCDIR
MAX_FILE_LINES=1000
MAX_FUNCTION_LINES=150
# Where functions are measured: every top-level folder of C sources but tests/ (and build
# directories inside the tree).
source_dirs() {
	local d
	for d in "$SRC"/*/; do
		d=$(basename "$d")
		case $d in tests | build* | autom4te.cache) continue ;; esac
		[ -n "$(find "$SRC/$d" -name '*.c' -print -quit)" ] && echo "$d"
	done
}
FUNCTION_DIRS=${FUNCTION_DIRS:-$(source_dirs)}

require_tools perl find wc

# long_functions FILE...: "file:line: name N lines" for each function over MAX_FUNCTION_LINES.
long_functions() {
	perl -e '
		my $max = shift;
		for my $f (@ARGV) {
			open(my $fh, "<", $f) or die "$f: $!";
			local $/; my $s = <$fh>; close $fh;
			# Blank comments, strings and character constants, keeping the newlines.
			$s =~ s{(/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\x27(?:\\.|[^\x27\\\n])*\x27)}{ (my $t = $1) =~ s/[^\n]/ /g; $t }gse;
			my ($depth, $line, $start, $name, $head) = (0, 1, 0, "", "");
			for my $c (split //, $s) {
				if ($c eq "\n") {
					$line++;
					$head .= " ";
					next;
				}
				if ($depth == 0 && $c ne "{" && $c ne "}") {
					$head .= $c;
					$head = "" if $c eq ";";
					next;
				}
				if ($c eq "{") {
					if ($depth == 0) {
						$head =~ s/^\s*#[^\n]*//mg;
						if ($head =~ /([A-Za-z_]\w*)\s*\([^{}]*\)\s*(?:__attribute__\s*\(\(.*\)\)\s*)?$/s
						    && $head !~ /\b(?:struct|union|enum)\s+\w*\s*$/ && $head !~ /=\s*$/
						    && substr($head, 0, $-[0]) !~ /=/) {
							($start, $name) = ($line, $1);
						} else {
							$start = 0;
						}
					}
					$depth++;
				} elsif ($c eq "}") {
					$depth--;
					if ($depth == 0) {
						my $n = $line - $start + 1;
						print "$f:$start: $name $n lines\n" if $start && $n > $max;
						($start, $head) = (0, "");
					}
				}
			}
		}' "$MAX_FUNCTION_LINES" "$@"
}

cd "$SRC" || bail_out "no source tree at $SRC"

# --- files in host/ ---------------------------------------------------------------------
files=$(find host -name '*.[ch]' | sort)
[ -n "$files" ] || bail_out "no C files under $SRC/host"
big=$(wc -l $files | awk -v max="$MAX_FILE_LINES" '$2 != "total" && $1 > max { print $2 " (" $1 " lines)" }')
if [ -z "$big" ]; then
	pass "no file in host/ has more than $MAX_FILE_LINES lines"
else
	fail "no file in host/ has more than $MAX_FILE_LINES lines"
	diag "$big"
fi

# --- functions ----------------------------------------------------------------------------
# The checker finds a long function: a generated one of MAX_FUNCTION_LINES + 1 lines.
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
{
	printf 'static int\nlong_one(int a)\n{\n'
	for _ in $(seq 1 $((MAX_FUNCTION_LINES - 1))); do printf '        a++;\n'; done
	printf '}\nstruct s { int a; };\nstatic const int t[] = {\n'
	for _ in $(seq 1 $((MAX_FUNCTION_LINES + 10))); do printf '        1,\n'; done
	printf '};\n'
} >"$T/long.c"
is "$(long_functions "$T/long.c" | sed "s|$T/||")" "long.c:3: long_one $((MAX_FUNCTION_LINES + 1)) lines" \
	"the checker finds a function of $((MAX_FUNCTION_LINES + 1)) lines and no initializer"

for dir in $FUNCTION_DIRS; do
	sources=$(find "$dir" -name '*.c' | sort)
	[ -n "$sources" ] || bail_out "no C sources under $SRC/$dir"
	long=$(long_functions $sources)
	if [ -z "$long" ]; then
		pass "no function in $dir/ has more than $MAX_FUNCTION_LINES lines"
	else
		fail "no function in $dir/ has more than $MAX_FUNCTION_LINES lines"
		diag "$long"
	fi
done

done_testing
