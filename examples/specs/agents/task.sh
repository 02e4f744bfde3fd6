#!/bin/sh
# A task agent speaking the milestone CommandAgent protocol (version 1).
# stdin: the request as one line of JSON; the task's id is its first "task" key.
read -r request || true
task=$(printf '%s\n' "$request" | grep -o '"task":"[^"]*"' | head -n 1 | cut -d '"' -f 4)
echo '{"progress": 0.5}'
printf '{"output":{"summary":"task %s done by sh","quality":{"tests-passed":1.0}}}\n' "$task"
