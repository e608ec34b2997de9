#!/bin/sh
# manlint.sh - the hand-written man pages render without a groff warning,
# and every ".so" redirect names a page that exists.
#
# Each page $top_srcdir/man/*.[1-8] that is not a redirect goes through
# "groff -man -ww -z": any output on stderr, or a non-zero status, fails.
# A redirect (first line ".so manN/page.N") must name an existing page of
# section N in man/ (man3/plast-rule.3 -> man/plast-rule.3); it is not
# rendered, as its manN/ target exists only once installed.
# Exit status: 0 pass, 1 fail, 77 skip (no groff), 99 hard error.

if [ -z "${top_srcdir:-}" ]; then
    top_srcdir=$(cd "$(dirname "$0")/.." && pwd) || exit 99
fi
LC_ALL=C
export LC_ALL

if ! command -v groff >/dev/null 2>&1; then
    echo "manlint: groff not found, skipping"
    exit 77
fi

mandir=$top_srcdir/man
if [ ! -d "$mandir" ]; then
    echo "manlint: no directory $mandir"
    exit 99
fi

fail=0
pages=0

# check_redirect PAGE TARGET: TARGET is "manN/name.N" and man/name.N exists
check_redirect() {
    dir=${2%%/*}
    file=${2##*/}
    section=${dir#man}
    case $2 in
    man[1-8]/*.[1-8]) ;;
    *)
        echo "FAIL: $1: .so target '$2' is not of the form manN/PAGE.N"
        return 1
        ;;
    esac
    case $file in
    *."$section") ;;
    *)
        echo "FAIL: $1: .so target '$2' is not in section $section"
        return 1
        ;;
    esac
    if [ ! -f "$mandir/$file" ]; then
        echo "FAIL: $1: .so target '$2' does not exist as $mandir/$file"
        return 1
    fi
    echo "ok: $1 (redirect to $2)"
    return 0
}

for page in "$mandir"/*.[1-8]; do
    [ -f "$page" ] || continue
    pages=$((pages + 1))
    first=$(sed -n '1p' "$page")
    case $first in
    .so\ *)
        target=${first#.so }
        if [ "$(wc -l < "$page")" -ne 1 ]; then
            echo "FAIL: $page: a redirect page must hold only its .so line"
            fail=1
        fi
        check_redirect "$page" "$target" || fail=1
        continue
        ;;
    esac
    # keep groff's stderr, drop its (empty with -z) stdout
    bad=0
    if ! warnings=$(groff -man -ww -z "$page" 2>&1 >/dev/null); then
        echo "FAIL: $page: groff exited with an error"
        bad=1
    fi
    if [ -n "$warnings" ]; then
        echo "FAIL: $page: groff -man -ww -z printed:"
        printf '%s\n' "$warnings"
        bad=1
    fi
    if [ $bad -eq 0 ]; then
        echo "ok: $page"
    else
        fail=1
    fi
done

if [ $pages -eq 0 ]; then
    echo "FAIL: no man pages in $mandir"
    exit 1
fi
exit $fail
