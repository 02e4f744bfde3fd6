#!/bin/sh
# A planning analyst speaking the milestone CommandAgent protocol (version 1).
# Usage: sh analyst.sh <scope|estimation|risk|kiro-strategy>
# stdin: the request as one line of JSON (read and ignored here: the answers are canned).
# stdout: one progress line, then the analysis as {"output": {"summary": ..., "data": ...}}.
read -r request || true
echo '{"progress": 0.5}'
case "$1" in
  scope)
    data='{"components":["login form","session store","password hashing"],"file_count":6}' ;;
  estimation)
    data='{"estimates":{"phases":[{"phase":"design","effort_ms":3600000},{"phase":"spec","effort_ms":5400000},{"phase":"task","effort_ms":1800000},{"phase":"execute","effort_ms":14400000}],"buffer_percent":20,"critical_path":["design","spec","task","execute"]},"tasks":[{"id":"hashing","title":"password hashing"},{"id":"sessions","title":"session store"},{"id":"form","title":"login form","dependencies":["hashing","sessions"]}]}' ;;
  risk)
    data='{"risks":[{"description":"credential stuffing","probability":"medium","impact":"high","mitigation":"rate limiting","contingency":"lock accounts"}]}' ;;
  kiro-strategy)
    data='{"keep":[{"description":"the user table","phase":"design"}],"improve":[{"description":"password storage","phase":"spec"}],"remove":[{"description":"plain-text reset links","phase":"execute"}],"originate":[{"description":"login tasks","phase":"task"}]}' ;;
  *)
    echo "analyst.sh: unknown analysis '$1'" >&2
    exit 2 ;;
esac
printf '{"output":{"summary":"%s analysed by sh","data":%s}}\n' "$1" "$data"
