#!/bin/sh
# Files the packing slip the router renders on stdin under slips/, one per
# order (the record id names it), written whole then renamed, so a printer
# queue watching the folder never picks up half a slip. To print it
# instead: lp -d warehouse
set -eu
mkdir -p slips
tmp=$(mktemp slips/.slip.XXXXXX)
{ cat; echo; } > "$tmp"
mv "$tmp" "slips/$STRIPE_ROUTER_RECORD_ID.txt"
