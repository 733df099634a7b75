# Shared by the command-line checks (check_tools.sh, check_bad_inputs.sh); source it after setting
# `work` (a scratch folder) and `fail=0`.
#
# expect EXIT_CODE NEEDLE -- command...
# Runs the command with stdout in $work/out and stderr in $work/err. It passes when the command
# exits with EXIT_CODE and its output contains NEEDLE; either way one ok/FAIL line is printed, a
# failure sets fail=1, and the exit code is left in `got`.
expect() {
  local code=$1 needle=$2
  shift 3
  "$@" > "$work/out" 2> "$work/err"
  got=$?
  if [ "$got" -ne "$code" ] || ! grep -aqF -- "$needle" "$work/err" "$work/out"; then
    echo "FAIL: $* -> exit $got (want $code), output lacks '$needle':"
    cat "$work/err"
    fail=1
  else
    echo "ok: $* -> exit $got: $(head -c 160 "$work/err" "$work/out" | tr '\n' ' ' | head -c 160)"
  fi
}
