#!/bin/sh
# A phase agent speaking the milestone CommandAgent protocol (version 1).
# stdin: the request as one line of JSON; the phase is its "role_name".
# stdout: progress lines, then {"output": ...} naming the phase's expected outputs (the
# quality gate checks them).
read -r request || true
phase=$(printf '%s\n' "$request" | grep -o '"role_name":"[^"]*"' | head -n 1 | cut -d '"' -f 4)
echo '{"progress": 0.3}'
echo "working on the $phase phase"   # chatter: not JSON, ignored by the protocol
echo '{"progress": 0.8}'
case "$phase" in
  design)  outputs="design-decisions architecture-diagrams pattern-analysis" ;;
  spec)    outputs="technical-specs api-contracts data-models" ;;
  task)    outputs="task-list dependency-graph execution-roadmap" ;;
  execute) outputs="implemented-code test-results validation-reports" ;;
  *)       outputs="" ;;
esac
artifacts=""
for name in $outputs; do
  artifacts="$artifacts${artifacts:+,}{\"name\":\"$name\",\"kind\":\"document\",\"body\":{\"inline\":\"$name\"}}"
done
printf '{"output":{"summary":"%s phase done by sh","artifacts":[%s]}}\n' "$phase" "$artifacts"
