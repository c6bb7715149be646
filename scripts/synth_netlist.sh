#!/usr/bin/env bash
# Synthesize a Verilog design to a gate-level yosys JSON netlist that `pannjax.hw.gates.load_yosys_json` reads.
#
#   scripts/synth_netlist.sh [-H] [-P NAME=VALUE ...] design.v [more.v ...] TOP out.json
#
#   -P NAME=VALUE  set parameter NAME of module TOP (yosys `chparam`) before synthesis; repeatable.
#   -H             keep the hierarchy for component labels: every module is synthesized and mapped on its
#                  own, then flattened, so each gate's cell name starts with its instance path (u_mult. ...)
#                  and the loader labels it by instance. Without -H the design is flattened first and
#                  optimized across module boundaries (fewer gates, but every gate is labelled "logic").
#
# Flow (yosys's standard `synth` script, then a re-map to simple gates):
#   read_verilog; [chparam]; synth [-flatten] -top TOP    generic synthesis; alumacc turns a + b into $alu
#                                                          (techmap: full-adder logic, Brent-Kung $lcu carries)
#                                                          and x * w into $macc (maccmap: AND partial products,
#                                                          carry-save full-adder rows, one final $alu)
#   setundef -zero                                        undefined (x) constants become 0
#   dfflegalize -cell $_DFF_P_ 0                          every flip-flop becomes a plain rising-edge $_DFF_P_
#                                                          starting at 0: clock enables and synchronous resets
#                                                          become MUX/AND logic on D, flops with init value 1
#                                                          get inverters on D and Q; asynchronous resets and
#                                                          latches are an error
#   abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX      re-map all logic (abc's default script: AIG rewriting,
#                                                          then &nf mapping) to these yosys simple gates; abc
#                                                          adds NOT/BUF where needed
#   opt_clean; [flatten; opt_expr; opt_clean]; write_json
# The gate set is a standard-cell library's basic two-input cells with XOR/XNOR and MUX as single gates;
# AOI/OAI cells (which `load_yosys_json` also reads) are left out so that every gate is a textbook gate.
set -euo pipefail

usage() { echo "usage: $0 [-H] [-P NAME=VALUE ...] design.v [more.v ...] TOP out.json" >&2; exit 2; }

if ! command -v yosys >/dev/null 2>&1; then
  echo "$0: yosys not found; install it (Debian/Ubuntu: apt-get install yosys)" >&2
  exit 1
fi

hier=0
params=()
while getopts "HP:" opt; do
  case "$opt" in
    H) hier=1 ;;
    P) [[ "$OPTARG" == *=* ]] || { echo "$0: -P needs NAME=VALUE, got '$OPTARG'" >&2; exit 2; }
       params+=("$OPTARG") ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 3 ] || usage
out="${*: -1}"
top="${*: -2:1}"
sources=("${@:1:$#-2}")
for f in "${sources[@]}"; do
  [ -f "$f" ] || { echo "$0: Verilog file '$f' not found" >&2; exit 1; }
done

script="read_verilog"
for f in "${sources[@]}"; do script+=" \"$f\""; done
script+=$'\n'
for p in "${params[@]+"${params[@]}"}"; do script+="chparam -set ${p%%=*} ${p#*=} $top"$'\n'; done
if [ "$hier" = 1 ]; then
  script+="synth -top $top"$'\n'
else
  script+="synth -flatten -top $top"$'\n'
fi
script+='setundef -zero
dfflegalize -cell $_DFF_P_ 0
abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX
opt_clean
'
if [ "$hier" = 1 ]; then
  script+=$'flatten\nopt_expr\nopt_clean\n'
fi
script+="write_json \"$out\""$'\n'

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf '%s' "$script" > "$tmp/synth.ys"
log="$tmp/yosys.log"
if ! yosys -q -l "$log" -s "$tmp/synth.ys" >/dev/null 2>&1; then
  echo "$0: yosys failed on ${sources[*]} (top $top); its log ends:" >&2
  tail -n 20 "$log" >&2
  if grep -q "cannot be legalized" "$log"; then
    echo "$0: pannjax netlists have one clock and plain D flip-flops reset to 0: use synchronous resets, no latches" >&2
  fi
  exit 1
fi
