#!/bin/sh
# Configure found no Criterion: the suite cannot run, and that is a failure.
echo "plast tests need Criterion: install libcriterion-dev and re-run configure" >&2
exit 1
